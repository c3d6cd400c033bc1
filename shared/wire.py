"""Translation helpers shared by every servicer: headers, timestamps, ids and the per-RPC error wrapper.

gRPC status is always OK for domain errors: a :class:`ClaretError` becomes a negative
``ResponseHeader.code`` with its messages; any other exception becomes code -1, is logged with a
traceback and never takes the server down. Unary (and client-streaming) handlers answer one response
carrying that header; server-streaming handlers end with one message carrying it.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import grpc
import structlog

from protos.nvidia.clara.platform import common_pb2
from shared import ids
from shared.errors import ClaretError, ErrorCode
from shared.logging import get_logger

log = get_logger("claret.rpc")
_request_ids = itertools.count(1)

Context = grpc.aio.ServicerContext[Any, Any]
"""What every handler receives besides its request."""


def ok_header() -> common_pb2.ResponseHeader:
    return common_pb2.ResponseHeader(code=0)


def error_header(code: int, *messages: str) -> common_pb2.ResponseHeader:
    return common_pb2.ResponseHeader(code=code, messages=list(messages))


def timestamp(unix: float | None) -> common_pb2.Timestamp:
    return common_pb2.Timestamp(value=ids.to_dotnet(unix))


def identifier(value: str | None) -> common_pb2.Identifier:
    return common_pb2.Identifier(value=value or "")


def _failure_header(exc: BaseException, method: str) -> common_pb2.ResponseHeader:
    if isinstance(exc, ClaretError):
        log.info("rpc refused", method=method, code=int(exc.code), messages=list(exc.messages))
        return error_header(exc.code, *exc.messages)
    log.exception("rpc failed", method=method)
    return error_header(ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


Handler = Callable[..., Coroutine[Any, Any, Any]]
StreamHandler = Callable[..., AsyncIterator[Any]]


def unary(response_type: Callable[..., Any]) -> Callable[[Handler], Handler]:
    """Wrap a unary or client-streaming handler: errors become the response's header."""

    def decorate(handler: Handler) -> Handler:
        method = handler.__qualname__

        @functools.wraps(handler)
        async def wrapper(self: Any, request: Any, context: Context) -> Any:
            structlog.contextvars.bind_contextvars(request_id=next(_request_ids), method=method)
            try:
                return await handler(self, request, context)
            except Exception as exc:
                return response_type(header=_failure_header(exc, method))
            finally:
                structlog.contextvars.unbind_contextvars("request_id", "method")

        return wrapper

    return decorate


def streaming(response_type: Callable[..., Any]) -> Callable[[StreamHandler], StreamHandler]:
    """Wrap a server-streaming handler: an error ends the stream with one header-only message."""

    def decorate(handler: StreamHandler) -> StreamHandler:
        method = handler.__qualname__

        @functools.wraps(handler)
        async def wrapper(self: Any, request: Any, context: Context) -> AsyncIterator[Any]:
            structlog.contextvars.bind_contextvars(request_id=next(_request_ids), method=method)
            try:
                async for message in handler(self, request, context):
                    yield message
            except Exception as exc:
                yield response_type(header=_failure_header(exc, method))
            finally:
                structlog.contextvars.unbind_contextvars("request_id", "method")

        return wrapper

    return decorate
