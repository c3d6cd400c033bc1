"""Build and run one grpc.aio server: services, health, reflection and graceful shutdown.

A :class:`Service` is whatever a service folder mounts: its servicers plus the background work that
starts and stops with the server (the jobs service's scheduler, for one). ``claret serve`` mounts
several on one port; each service's own entry point mounts one.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from shared.logging import get_logger

log = get_logger("claret.server")

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""Clients may send chunks up to 4 MiB plus the message's other fields; leave room."""


class Service(Protocol):
    """Servicers that are mounted together, and the work that lives as long as the server."""

    names: tuple[str, ...]
    """Full gRPC service names, for health and reflection."""

    def register(self, server: grpc.aio.Server) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def problem(self) -> str | None:
        """Why the service cannot do its work right now (database, runtime), or None when it can."""
        ...


READINESS_TIMEOUT_S = 3.0


class ClaretServer:
    """A grpc.aio server with the given services, the health service and server reflection."""

    def __init__(
        self,
        services: Sequence[Service],
        host: str,
        port: int,
        *,
        credentials: grpc.ServerCredentials | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
        readiness_interval: float = 5.0,
    ) -> None:
        self.services = list(services)
        self._readiness_interval = readiness_interval
        self._watcher: asyncio.Task[None] | None = None
        self.address = f"{host}:{port}"
        self.port = 0
        self._credentials = credentials
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]  # not in the package's stubs
        self._server = grpc.aio.server(
            interceptors=list(interceptors),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        self._stopped = asyncio.Event()

    @property
    def service_names(self) -> list[str]:
        return [name for service in self.services for name in service.names]

    async def start(self) -> int:
        """Start background work, bind, serve; returns the bound port."""
        for service in self.services:
            service.register(self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
        )
        for service in self.services:  # recovery first: the port opens once the services can answer
            await service.start()
        if self._credentials is None:
            self.port = self._server.add_insecure_port(self.address)
        else:
            self.port = self._server.add_secure_port(self.address, self._credentials)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.address}")
        await self._server.start()
        await self.check_readiness()
        self._watcher = asyncio.create_task(self._watch_readiness())
        log.info("serving", address=self.address, port=self.port, services=self.service_names)
        return self.port

    async def check_readiness(self) -> None:
        """Health per service name: SERVING when its checks pass, NOT_SERVING otherwise; "" when all do."""
        serving = health_pb2.HealthCheckResponse.SERVING
        all_ready = True
        for service in self.services:
            try:
                reason = await asyncio.wait_for(service.problem(), READINESS_TIMEOUT_S)
            except Exception as exc:  # a check that hangs or breaks means "not ready", never a crash
                reason = f"readiness check failed: {type(exc).__name__}: {exc}"
            for name in service.names:
                await self.health.set(name, serving if reason is None else health_pb2.HealthCheckResponse.NOT_SERVING)
            if reason is not None:
                all_ready = False
                log.warning("not ready", services=service.names, reason=reason)
        await self.health.set("", serving if all_ready else health_pb2.HealthCheckResponse.NOT_SERVING)

    async def _watch_readiness(self) -> None:
        while True:
            await asyncio.sleep(self._readiness_interval)
            await self.check_readiness()

    async def stop(self, grace: float = 5.0) -> None:
        """Refuse new calls, let running ones finish for ``grace`` seconds, then stop background work."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher  # no readiness check may run against services that are stopping
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)
        for service in reversed(self.services):
            try:
                await service.stop()
            except Exception:
                log.exception("service did not stop cleanly", services=service.names)
        log.info("stopped", address=self.address)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


async def serve_until_signalled(server: ClaretServer, grace: float = 5.0) -> None:
    """Serve until SIGINT or SIGTERM: the first signal stops gracefully, a second one forces."""
    loop = asyncio.get_running_loop()
    stopping: asyncio.Task[None] | None = None

    def on_signal() -> None:
        nonlocal stopping
        if stopping is None:
            log.info("shutting down; send the signal again to force")
            stopping = loop.create_task(server.stop(grace))
        else:
            stopping.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await server.start()
        await server.wait_stopped()
        if stopping is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await stopping
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine on uvloop where it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(main)
    else:
        uvloop.run(main)


AddServicer = Callable[[Any, grpc.aio.Server], None]
Hook = Callable[[], Awaitable[None]]
Check = Callable[[], Awaitable[str | None]]


class ServicerSet:
    """A :class:`Service` made of generated servicers and optional start/stop hooks."""

    def __init__(
        self,
        servicers: Sequence[tuple[str, Any, AddServicer]],
        on_start: Sequence[Hook] = (),
        on_stop: Sequence[Hook] = (),
        checks: Sequence[Check] = (),
    ) -> None:
        """``servicers``: (full service name, servicer, its generated ``add_XServicer_to_server``)."""
        self.names = tuple(name for name, _, _ in servicers)
        self._servicers = servicers
        self._on_start = on_start
        self._on_stop = on_stop
        self._checks = checks

    def register(self, server: grpc.aio.Server) -> None:
        for _, servicer, add in self._servicers:
            add(servicer, server)

    async def start(self) -> None:
        for hook in self._on_start:
            await hook()

    async def stop(self) -> None:
        for hook in self._on_stop:
            await hook()

    async def problem(self) -> str | None:
        for check in self._checks:
            reason = await check()
            if reason is not None:
                return reason
        return None
