"""The composition root: open the shared resources, build the chosen services, serve them on one port."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable

from shared.config import Settings
from shared.logging import get_logger
from shared.resources import Resources
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


async def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM, then shut down gracefully and close the database."""
    resources = await Resources.open(settings)
    try:
        server = ClaretServer(await build_services(resources), settings.host, settings.port)
        await serve_until_signalled(server, grace=settings.stop_grace)
    finally:
        await resources.close()
