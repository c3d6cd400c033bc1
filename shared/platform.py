"""How a service reaches the platform's gRPC services as their client (the DICOM service, the console)."""

from __future__ import annotations

import asyncio

from claret.client import ROUTED_SERVICES, PlatformClient, Security
from shared.config import Settings
from shared.logging import get_logger
from shared.security import load_tokens

log = get_logger("claret.platform")


def platform_addresses(text: str | None, settings: Settings) -> tuple[str, dict[str, str]]:
    """Where the platform's services are, from a setting such as ``CLARET_CONSOLE_PLATFORM``: ``host:port``
    of one process serving them all, or ``service=host:port`` entries, comma-separated, for services in
    processes of their own (``jobs=jobs:30031,pipelines=pipelines:30031,payloads=payloads:30031``; the
    Clara and scheduling services go with ``jobs``). Unset, or no plain entry: this process's own port, or
    the jobs service's. ValueError naming an entry that is neither."""
    default, routes = None, {}
    for entry in filter(None, (part.strip() for part in (text or "").split(","))):
        name, equals, address = entry.partition("=")
        if not equals:
            default = entry
        elif name.strip() in ROUTED_SERVICES and address.strip():
            routes[name.strip()] = address.strip()
        else:
            services = ", ".join(ROUTED_SERVICES)
            raise ValueError(f"{entry!r}: want host:port, or service=host:port with a service of {services}")
    if "jobs" in routes:
        routes.setdefault("clara", routes["jobs"])
        routes.setdefault("scheduling", routes["jobs"])
    return default or routes.get("jobs") or own_address(settings), routes


def platform_client(settings: Settings, address: str | None) -> PlatformClient:
    """A client of ``address`` (see :func:`platform_addresses`), or of this process's own gRPC port, with the
    first accepted token when tokens are on and TLS when the server has it (trusting its own certificate)."""
    tokens = load_tokens(settings)
    mutual = settings.tls_client_ca is not None
    security = Security(
        token=sorted(tokens)[0] if tokens else None,
        tls=settings.tls_cert is not None,
        ca_cert=settings.tls_cert,
        client_cert=settings.tls_cert if mutual else None,
        client_key=settings.tls_key if mutual else None,
    )
    default, routes = platform_addresses(address, settings)
    return PlatformClient(default, security=security, routes=routes)


class SharedClient:
    """One platform client (one gRPC channel) for all of a service's calls, made at the first call, on the
    loop that makes it (grpc.aio binds a channel to its loop): a channel per request cost about a
    millisecond of this process's CPU (bench/console_load.py). Calling it gives the client; close at stop."""

    def __init__(self, settings: Settings, address: str | None) -> None:
        self._settings = settings
        self._address = address
        self._client: PlatformClient | None = None

    def __call__(self) -> PlatformClient:
        if self._client is None:
            self._client = platform_client(self._settings, self._address)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def own_address(settings: Settings) -> str:
    """This process's gRPC address as a client reaches it (a wildcard listen address means loopback)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    return f"{host}:{settings.port}"


async def cancel_half_made(client: PlatformClient, job_id: str, reason: str) -> None:
    """Cancel a job that was created but could not be made whole (its files, its start). Shielded, so a
    request or task being cancelled still lets it through; a failure is logged, not raised: the failure
    that made the job half-made is the one its caller reports."""
    try:
        await asyncio.shield(client.cancel_job(job_id, reason))
    except Exception as exc:
        log.warning("half-made job not canceled", job=job_id, error=str(exc))
