"""The Docker runtime's operator logs: the container's output copied, raw and live, into the operator's log
file under its cap, and the engine's own bounded copy that a restarted service reads back.

The copy follows ``/attach`` (see :class:`LogCopy` for why not ``/logs?follow``), demultiplexes the
engine's frames into the log file up to ``max_log_bytes`` (then :func:`truncation_marker`, and the rest is
drained and dropped), and ends when the engine closes the stream: nothing waits on a clock that could
drop output.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from pathlib import Path
from typing import IO, Any

import aiohttp
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError

from services.jobs.runtimes.base import OperatorSpec, truncation_marker

MB = 1024 * 1024
ENGINE_LOG_FILES = 2
"""How many json-file log files the engine keeps per container (see :func:`engine_log_config`)."""
MIN_ENGINE_LOG_FILE = 1 * MB
"""The smallest json-file log file: a tiny cap must not make the engine rotate at every line."""
FRAME_HEADER = struct.Struct(">BxxxL")
"""The 8-byte header of each frame of a multiplexed stream (no TTY): stream (1 stdout, 2 stderr), length."""
STALLED_AFTER_EXIT = 60.0
"""Seconds without output after which a log copy still open once its container exited is given up (the
engine closes the stream within about 2 s of the exit; this only guards against one that never does)."""
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=30)
"""A log stream lasts as long as the operator; only connecting to the engine is bounded."""


def error_text(exc: BaseException) -> str:
    """What an error of the engine (its message) or of the connection to it says, never empty."""
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


def engine_log_config(spec: OperatorSpec) -> dict[str, Any]:
    """The engine's own copy of the logs: a json-file bounded to about the operator's cap.

    The log file is written from the live ``/attach`` stream, so the engine's copy only matters when this
    service restarts while the operator runs: :meth:`DockerRuntime.attach` then rewrites the log file from
    it. It is bounded so that an operator printing without end cannot fill the engine's disk: at most
    ``ENGINE_LOG_FILES`` files of ``max_log_bytes / ENGINE_LOG_FILES`` each, so the engine never holds more
    than about the cap (plus one line). Rotation keeps the newest output: a restart re-reads the whole of
    the output of an operator that wrote less than about half the cap (json adds some 50 bytes a line), and
    only its last part beyond that. The live copy never reads these files, so their rotation cannot lose
    any of it."""
    size = max(-(-spec.max_log_bytes // ENGINE_LOG_FILES), MIN_ENGINE_LOG_FILE)
    return {"Type": "json-file", "Config": {"max-size": str(size), "max-file": str(ENGINE_LOG_FILES)}}


class CappedLog:
    """The operator's log file: output up to ``limit`` bytes, then the truncation marker once, then nothing
    (the rest is counted and dropped, so the stream keeps being drained and the operator never blocks)."""

    def __init__(self, path: Path, limit: int, *, rewrite: bool) -> None:
        # Large buffer, flushed after each chunk read from the engine: few system calls, yet readers of a
        # running operator's log see its output as it comes.
        self._file: IO[bytes] = open(path, "wb" if rewrite else "ab", buffering=MB)  # noqa: SIM115
        self._limit = limit
        self._room = max(limit - self._file.tell(), 0)  # appending: what is there counts toward the cap
        self.truncated = False
        self.received = 0
        """Bytes of output handed to :meth:`write`, kept or not."""
        self._skip = 0

    def skip(self, count: int) -> None:
        """The next ``count`` bytes handed to :meth:`write` are already here (a second read of the same
        output from its start): drop them."""
        self._skip = count
        self.received -= count

    def write(self, data: memoryview) -> None:
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            self.received += dropped
            data = data[dropped:]
        self.received += len(data)
        if self.truncated or not data:
            return
        if len(data) <= self._room:
            self._file.write(data)
            self._room -= len(data)
            return
        self._file.write(data[: self._room])
        self._file.write(truncation_marker(self._limit))
        self._room = 0
        self.truncated = True

    def note(self, line: bytes) -> None:
        """A line of Claret's own, past the cap if need be (it says why output is missing)."""
        self._file.write(line)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


async def demultiplex(content: aiohttp.StreamReader, log_file: CappedLog) -> None:
    """Copy a multiplexed stream (frames of an 8-byte header and a payload) into ``log_file``, payloads
    only, stdout and stderr in the order the engine sent them. Reads whatever the connection has (large
    chunks) and writes once per chunk (``/logs`` sends a frame per line); raises :class:`ConnectionError`
    when the stream ends inside a frame."""
    header = bytearray()  # a header split between two chunks
    remaining = 0  # payload bytes of the current frame still to come
    unpack = FRAME_HEADER.unpack_from
    size = FRAME_HEADER.size
    while chunk := await content.readany():
        view = memoryview(chunk)
        at, end = 0, len(chunk)
        parts: list[memoryview] = []
        while at < end:
            if remaining:
                take = min(remaining, end - at)
                parts.append(view[at : at + take])
                at += take
                remaining -= take
            elif not header and end - at >= size:
                remaining = unpack(chunk, at)[1]
                at += size
            else:
                take = min(size - len(header), end - at)
                header += view[at : at + take]
                at += take
                if len(header) == size:
                    remaining = unpack(header)[1]
                    header.clear()
        if parts:
            log_file.write(parts[0] if len(parts) == 1 else memoryview(b"".join(parts)))
        log_file.flush()
    if header or remaining:
        raise ConnectionError(f"the stream ended inside a frame ({remaining or 'header'} bytes missing)")


class LogCopy:
    """Copies one container's output into its log file, from a response of the engine, until it ends.

    A container started by this service is followed through ``POST /containers/{id}/attach`` (no Upgrade
    header: the engine answers a plain 200 and streams raw bytes until the container's streams close),
    opened before the container starts, rather than ``GET /logs?follow=1``:

    - attach hands over what the container writes as it writes it, in frames of up to 32 KiB, and applies
      back-pressure: if this service reads slowly the container's writes block, as with any pipe, instead
      of output being lost. ``/logs?follow`` re-reads the engine's json-file (one frame per line, each line
      json-decoded by the engine) and falls behind a fast writer; behind by more than the bounded files
      hold, it would miss what the engine had rotated away.
    - the engine closes an attach stream once the container's output is drained, so the copy's end is
      the end of the output: :meth:`DockerHandle.wait` waits for it, with no timeout.

    Limits of attach, both the engine's: output written in the few microseconds between the engine's
    answer to the attach and its joining the container's streams would be missed (the container is not
    started until the answer has come, as ``docker run`` does); and when the container exits the engine
    waits at most 2 s for its output pipes to drain into its readers, so a reader stalled for longer at
    that moment would lose the last pipe-full (a few hundred KiB at most).

    After a restart of this service (:meth:`DockerRuntime.attach`) the copy is ``GET /logs?follow=1``: the
    engine's json-file from the oldest line it kept (see :func:`engine_log_config`), then what follows; the
    log file is rewritten from it. A stream that ends while the container still runs, or inside a frame,
    or fails, is said in the exit's message and at the end of the log, never silently.
    """

    def __init__(
        self, container: DockerContainer, log_file: CappedLog, response: aiohttp.ClientResponse | None = None
    ) -> None:
        """Copy from ``response`` (an attach opened before the start), or else from ``/logs?follow=1``."""
        self._container = container
        self._log_file = log_file
        self._response = response
        self.task = asyncio.create_task(self._copy())

    async def _copy(self) -> str:
        """Copy to the end; what went wrong (also noted at the end of the log), or "". Whatever happens the
        connection is closed, which lets the engine drop this reader: a failed copy never blocks the
        container, and the operator's end is still told by waiting on the container."""
        try:
            if self._response is None:
                self._response = await open_stream(self._container, restarted=True)
            await demultiplex(self._response.content, self._log_file)
            if await self._still_running():  # the engine closes the stream once the output is drained
                raise ConnectionError("the engine ended the stream while the operator still ran")
            return ""
        except Exception as exc:  # aiohttp's, the engine's, the disk's: said, never silent
            problem = f"the log stream from the Docker engine broke ({error_text(exc)})"
            with contextlib.suppress(OSError, ValueError):
                self._log_file.note(f"\n[claret: {problem}; output from here on may be missing]\n".encode())
            return f"{problem}: the log may miss output"
        finally:
            self._close()

    def _close(self) -> None:
        if self._response is not None:
            self._response.close()
        with contextlib.suppress(OSError):
            self._log_file.close()

    async def _still_running(self) -> bool:
        """Whether the container runs (asked after its stream ended: the engine closes the streams of an
        exited container before it records the exit, and answers an inspect only once it has)."""
        try:
            info = await self._container.show()
        except DockerError:
            return False  # gone, or the engine with it: waiting on the container tells
        return bool(info.get("State", {}).get("Running"))

    @property
    def truncated(self) -> bool:
        return self._log_file.truncated

    async def finish(self) -> str:
        """Wait, once the container exited, for the copy to end; what went wrong, or "". No deadline cuts a
        copy that moves; one that brings nothing for ``STALLED_AFTER_EXIT`` seconds (an engine that never
        closes the stream) is given up, and said. A cancelled wait leaves the copy running."""
        seen = self._log_file.received
        while True:
            done, _ = await asyncio.wait({self.task}, timeout=STALLED_AFTER_EXIT)
            if done:
                return self.task.result()
            if self._log_file.received == seen:
                problem = f"the log stream from the Docker engine stalled {STALLED_AFTER_EXIT:.0f} s after the exit"
                with contextlib.suppress(OSError, ValueError):
                    self._log_file.note(f"\n[claret: {problem}; output from here on may be missing]\n".encode())
                self.abandon()
                return f"{problem}: the log may miss output"
            seen = self._log_file.received

    def abandon(self) -> None:
        """Stop copying (the container is lost, or never started)."""
        self.task.cancel()
        self._close()  # a task cancelled before it ran never runs its own clean-up


async def open_stream(container: DockerContainer, *, restarted: bool) -> aiohttp.ClientResponse:
    """The engine's response streaming the container's output, multiplexed (see :class:`LogCopy`)."""
    if restarted:
        path, method, params = f"containers/{container.id}/logs", "GET", {"follow": 1}
    else:
        path, method, params = f"containers/{container.id}/attach", "POST", {"stream": 1, "logs": 0}
    return await container.docker._do_query(  # aiodocker's own stream APIs decode to str, or parse frame by frame
        path,
        method,
        params={**params, "stdout": 1, "stderr": 1},
        timeout=STREAM_TIMEOUT,
        read_until_eof=True,
    )
