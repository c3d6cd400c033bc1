"""Transport security and authentication, both off by default (loopback, like the original platform).

- TLS: the server presents ``tls_cert``/``tls_key``; with ``tls_client_ca`` it also requires client
  certificates signed by that CA (mutual TLS).
- Bearer tokens: with a token list configured, every call must carry ``authorization: Bearer <token>``
  metadata, else it is refused with UNAUTHENTICATED. Health checks stay open, so probes need no secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import grpc

from shared.config import Settings

OPEN_METHODS = ("/grpc.health.v1.Health/",)
"""Calls that need no token: load balancers and orchestrators probe health without secrets."""


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials when a certificate is configured, else None (plaintext)."""
    if settings.tls_cert is None and settings.tls_key is None:
        if settings.tls_client_ca is not None:
            raise ValueError("tls_client_ca needs tls_cert and tls_key: mutual TLS is TLS first")
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise ValueError("TLS needs both tls_cert and tls_key")
    pair = (settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())
    client_ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


def load_tokens(settings: Settings) -> frozenset[str]:
    """Accepted bearer tokens: ``auth_tokens`` plus the non-empty, non-comment lines of ``auth_tokens_file``."""
    tokens = set(settings.auth_tokens or ())
    if settings.auth_tokens_file is not None:
        lines = settings.auth_tokens_file.read_text().splitlines()
        tokens.update(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return frozenset(tokens)


if TYPE_CHECKING:  # generic only in grpc-stubs
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.aio.ServerInterceptor


class TokenInterceptor(_ServerInterceptor):
    """Refuse calls without a configured bearer token (compared in constant time)."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = [token.encode() for token in tokens]
        if not self._tokens:
            raise ValueError("TokenInterceptor needs at least one token")

    def authorised(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                text = value.decode() if isinstance(value, bytes) else value
                scheme, _, token = text.partition(" ")
                if scheme.lower() == "bearer":
                    offered = token.strip().encode()
                    # Check every token so the time taken does not tell which one was close.
                    return any([hmac.compare_digest(offered, known) for known in self._tokens])
        return False

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_METHODS):
            return handler
        if self.authorised(details.invocation_metadata):
            return handler
        return _refusing(handler)


def _refusing(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as ``handler`` that answers UNAUTHENTICATED."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "this platform needs a valid bearer token (metadata 'authorization: Bearer <token>')",
        )

    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return make(
        refuse, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )
