"""``claret serve``: run the platform's services in this process (the server half of the ``claret`` command)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from shared.config import ALL_SERVICES, RUNTIMES, Settings


def server_process() -> None:
    """What a server process sets before gRPC is first imported in it.

    gRPC's fork handlers run in a forked child before it execs, and have crashed it (SIGSEGV in cygrpc).
    A server never forks a gRPC process on purpose (operators start through posix_spawn); turn them off for
    any library that still forks. Set here, by the command, not on import: importing ``claret`` changes no
    environment."""
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")


def _services(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [name for name in names if name not in ALL_SERVICES]
    if unknown or not names:
        raise click.BadParameter(f"choose from {', '.join(ALL_SERVICES)} (comma-separated)")
    return names


@click.command()
@click.option("--host", help="Address to listen on [CLARET_HOST; default 127.0.0.1].")
@click.option("--port", type=int, help="gRPC port [CLARET_PORT; default 30031].")
@click.option(
    "--data-dir", type=click.Path(path_type=Path), help="Data directory [CLARET_DATA_DIR; default ./.claret]."
)
@click.option(
    "--services", callback=_services, help="Comma-separated subset of pipelines,payloads,jobs [CLARET_SERVICES]."
)
@click.option("--runtime", type=click.Choice(RUNTIMES), help="Operator runtime [CLARET_RUNTIME; default auto].")
@click.option("--log-format", type=click.Choice(["console", "json"]), help="Log format [CLARET_LOG_FORMAT].")
@click.option("--log-level", help="Log level [CLARET_LOG_LEVEL; default info].")
@click.option("--metrics-port", type=int, help="Serve Prometheus metrics on this port [CLARET_METRICS_PORT; off].")
def serve(**options: Any) -> None:
    """Run the platform's services on one port (all of them unless --services says otherwise)."""
    server_process()
    from claret.serve import serve as serve_forever  # the server's imports: for `serve` only
    from shared.logging import configure_logging
    from shared.server import run

    try:
        settings = Settings.load(options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    configure_logging(settings.log_format, settings.log_level)
    run(serve_forever(settings))
