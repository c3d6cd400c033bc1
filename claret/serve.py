"""The composition root: open the shared resources, build the chosen services, serve them on one port."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable

from shared.config import Settings
from shared.logging import get_logger
from shared.resources import Resources
from shared.security import TokenInterceptor, load_tokens, server_credentials
from shared.server import ClaretServer, Service, serve_until_signalled

log = get_logger("claret.serve")


async def build_services(resources: Resources) -> list[Service]:
    """One :class:`Service` per configured name, each from ``services.<name>.build``."""
    services = []
    for name in resources.settings.services:
        module = importlib.import_module(f"services.{name}")
        build: Callable[[Resources], Awaitable[Service]] = module.build
        services.append(await build(resources))
    return services


def make_server(settings: Settings, services: list[Service]) -> ClaretServer:
    """A server for ``services`` with the configured TLS and bearer-token checks (both off by default)."""
    tokens = load_tokens(settings)
    return ClaretServer(
        services,
        settings.host,
        settings.port,
        credentials=server_credentials(settings),
        interceptors=[TokenInterceptor(tokens)] if tokens else [],
    )


async def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM, then shut down gracefully and close the database."""
    resources = await Resources.open(settings)
    if settings.metrics_port is not None:
        port = resources.metrics.serve(settings.host, settings.metrics_port)
        log.info("metrics", url=f"http://{settings.host}:{port}/metrics")
    try:
        server = make_server(settings, await build_services(resources))
        await serve_until_signalled(server, grace=settings.stop_grace)
    finally:
        await resources.close()
