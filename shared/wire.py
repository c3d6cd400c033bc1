"""Translation helpers shared by every servicer: headers, timestamps, ids and the per-RPC error wrapper.

gRPC status is always OK for domain errors: a :class:`ClaretError` becomes a negative
``ResponseHeader.code`` with its messages; any other exception becomes code -1, is logged with a
traceback and never takes the server down. Unary (and client-streaming) handlers answer one response
carrying that header; server-streaming handlers end with one message carrying it. Every message of a
server stream carries a header, as the API says.
"""

from __future__ import annotations

import functools
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import grpc
import structlog

from protos.nvidia.clara.platform import common_pb2
from shared import ids
from shared.errors import ClaretError, ErrorCode
from shared.logging import get_logger
from shared.metrics import Metrics

log = get_logger("claret.rpc")
CANCELLED = 1
"""Recorded as a stream's code when its client left before the end (positive: not a Clara error)."""
SLOW_RPC_S = 1.0
"""Unary calls slower than this are logged at info even when they succeed."""

Context = grpc.aio.ServicerContext[Any, Any]
"""What every handler receives besides its request."""

_PROCESS_TAG = secrets.token_hex(3)
_CALL_NUMBERS = itertools.count(1)


def request_id() -> str:
    """A new id for one RPC's log lines: this process's random tag and a counter (unique without asking
    the kernel for random bytes on every call)."""
    return f"{_PROCESS_TAG}-{next(_CALL_NUMBERS):x}"


class Servicer:
    """Base of every servicer: what the per-RPC wrappers (:func:`unary`, :func:`streaming`) need of it."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics


def ok_header() -> common_pb2.ResponseHeader:
    return common_pb2.ResponseHeader(code=0)


def error_header(code: int, *messages: str) -> common_pb2.ResponseHeader:
    return common_pb2.ResponseHeader(code=code, messages=list(messages))


def timestamp(unix: float | None) -> common_pb2.Timestamp:
    return common_pb2.Timestamp(value=ids.to_dotnet(unix))


def identifier(value: str | None) -> common_pb2.Identifier:
    return common_pb2.Identifier(value=value or "")


def _failure_header(exc: BaseException) -> common_pb2.ResponseHeader:
    if isinstance(exc, ClaretError):
        return error_header(exc.code, *exc.messages)
    log.exception("rpc failed")
    return error_header(ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


class Call:
    """One RPC: its request id (bound to every log line written while it runs), timing and outcome,
    logged and counted once when it ends."""

    __slots__ = ("code", "messages", "method", "metrics", "peer", "service", "started")

    def __init__(self, qualname: str, context: Context, metrics: Metrics) -> None:
        self.metrics = metrics
        servicer, _, self.method = qualname.partition(".")
        self.service = servicer.removesuffix("Servicer")
        # Read now: once a client has gone, the call behind the context may be torn down, and asking it
        # for its peer then crashed grpc's C core (a segfault on interrupted downloads).
        self.peer = context.peer()
        self.code = 0
        self.messages: list[str] = []
        self.started = time.perf_counter()
        structlog.contextvars.bind_contextvars(request_id=request_id(), rpc=f"{self.service}.{self.method}")

    def failed(self, exc: BaseException) -> common_pb2.ResponseHeader:
        header = _failure_header(exc)
        self.code, self.messages = header.code, list(header.messages)
        return header

    def finish(self) -> None:
        seconds = time.perf_counter() - self.started
        self.metrics.rpc_answered(self.service, self.method, self.code, seconds)
        # Every RPC is logged once; at debug when it went well and fast, since a polled Status would
        # otherwise spend a fifth of its time in the access log (bench/status_rate.py measured it).
        notable = self.code < 0 or seconds >= SLOW_RPC_S
        if notable or log.is_enabled_for(logging.DEBUG):
            (log.info if notable else log.debug)(
                "rpc",
                peer=self.peer,
                code=self.code,
                ms=round(seconds * 1000, 2),
                **({"messages": self.messages} if self.messages else {}),
            )
        structlog.contextvars.unbind_contextvars("request_id", "rpc")


Handler = Callable[..., Coroutine[Any, Any, Any]]
StreamHandler = Callable[..., AsyncIterator[Any]]


def unary(response_type: Callable[..., Any]) -> Callable[[Handler], Handler]:
    """Wrap a unary or client-streaming handler: errors become the response's header."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(self: Servicer, request: Any, context: Context) -> Any:
            call = Call(handler.__qualname__, context, self.metrics)
            try:
                response = await handler(self, request, context)
                call.code = response.header.code
                return response
            except Exception as exc:
                return response_type(header=call.failed(exc))
            finally:
                call.finish()

        return wrapper

    return decorate


def streaming(response_type: Callable[..., Any]) -> Callable[[StreamHandler], StreamHandler]:
    """Wrap a server-streaming handler: every message carries a response header (OK unless the handler set
    one), and an error ends the stream with one header-only message."""

    def decorate(handler: StreamHandler) -> StreamHandler:
        @functools.wraps(handler)
        async def wrapper(self: Servicer, request: Any, context: Context) -> AsyncIterator[Any]:
            call = Call(handler.__qualname__, context, self.metrics)
            try:
                async for message in handler(self, request, context):
                    message.header.SetInParent()  # present even when all its fields are defaults (code 0)
                    yield message
                    if context.cancelled():  # the client left: stop reading files for nobody
                        call.code = CANCELLED
                        return
            except Exception as exc:
                yield response_type(header=call.failed(exc))
            finally:
                call.finish()

        return wrapper

    return decorate


# --- Claret's own APIs ------------------------------------------------------------------------------------

DEFAULT_LIMIT = 50
"""Rows a list answers when the request says 0 (proto3's "not given")."""
MAX_LIMIT = 1000
"""Rows a list answers at most: a larger limit is lowered to this rather than refused."""


class InvalidArgument(ValueError):
    """A request value the service refuses: answered as INVALID_ARGUMENT with this message."""


def rows_wanted(limit: int) -> int:
    """The number of rows a request's ``limit`` asks for (Claret's own APIs: 0 means the default)."""
    if limit < 0:
        raise InvalidArgument(f"limit must be 0 (meaning {DEFAULT_LIMIT}) or more, not {limit}")
    return min(limit or DEFAULT_LIMIT, MAX_LIMIT)


def answered(handler: Handler) -> Handler:
    """Wrap a unary handler of Claret's own APIs (whose messages have no Clara ``ResponseHeader``): timed,
    logged and counted like every RPC; a failure ends the call with a gRPC status, INVALID_ARGUMENT with the
    message of an :class:`InvalidArgument`, INTERNAL (logged with its traceback) for anything else.

    ``context.abort`` ends the call by raising: it is called after the ``except`` blocks, which would catch it.
    """

    @functools.wraps(handler)
    async def wrapper(self: Servicer, request: Any, context: Context) -> Any:
        call = Call(handler.__qualname__, context, self.metrics)
        try:
            try:
                return await handler(self, request, context)
            except InvalidArgument as exc:
                code, message = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
            except Exception as exc:
                log.exception("rpc failed")
                code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"
            call.code, call.messages = -code.value[0], [message]
            await context.abort(code, message)
        finally:
            call.finish()

    return wrapper
