"""The web console: jobs, their DAGs, logs and files, in a browser (``docs/console.md``). An HTTP server of
its own (aiohttp) on ``CLARET_CONSOLE_PORT``, reading the platform through its gRPC API."""

from __future__ import annotations

import ssl

from aiohttp import web

from services.console.app import make_app
from shared.config import Settings
from shared.logging import get_logger
from shared.platform import SharedClient, platform_addresses
from shared.resources import Resources
from shared.security import load_tokens
from shared.server import Service, ServicerSet

log = get_logger("claret.console")


class Console:
    """The console's HTTP server, started and stopped with the process's gRPC server."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        tls = settings.tls_cert is not None
        platform_addresses(settings.console_platform, settings)  # a mistyped setting fails the start, not a page
        self._client = SharedClient(settings, settings.console_platform)
        app = make_app(self._client, frozenset(load_tokens(settings)), secure_cookies=tls)
        self._runner = web.AppRunner(app, access_log=None)
        self.port = 0

    async def start(self) -> None:
        settings = self._settings
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.host, settings.console_port, ssl_context=_tls(settings))
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        scheme = "https" if settings.tls_cert else "http"
        log.info("console", url=f"{scheme}://{settings.host}:{self.port}/")

    async def stop(self) -> None:
        await self._runner.cleanup()
        await self._client.close()


def _tls(settings: Settings) -> ssl.SSLContext | None:
    """The gRPC port's certificate for the console's port too (TLS like the gRPC port)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


async def build(resources: Resources) -> Service:
    console = Console(resources.settings)
    return ServicerSet([], on_start=[console.start], on_stop=[console.stop])
