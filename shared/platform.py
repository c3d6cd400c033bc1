"""How a service reaches the platform's gRPC services as their client (the DICOM service, the console)."""

from __future__ import annotations

from claret.client import PlatformClient, Security
from shared.config import Settings
from shared.security import load_tokens


def platform_client(settings: Settings, address: str | None) -> PlatformClient:
    """A client of ``address``, or of this process's own gRPC port, with the first accepted token when tokens
    are on and TLS when the server has it (trusting its own certificate)."""
    tokens = load_tokens(settings)
    mutual = settings.tls_client_ca is not None
    security = Security(
        token=sorted(tokens)[0] if tokens else None,
        tls=settings.tls_cert is not None,
        ca_cert=settings.tls_cert,
        client_cert=settings.tls_cert if mutual else None,
        client_key=settings.tls_key if mutual else None,
    )
    return PlatformClient(address or own_address(settings), security=security)


def own_address(settings: Settings) -> str:
    """This process's gRPC address as a client reaches it (a wildcard listen address means loopback)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    return f"{host}:{settings.port}"
