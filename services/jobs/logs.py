"""Operator logs read back for ReadLogs: in bounded chunks and messages, so memory stays flat whatever a
log's size."""

from __future__ import annotations

import asyncio
import codecs
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

LOG_LINES_PER_MESSAGE = 1000
LOG_BYTES_PER_MESSAGE = 1024 * 1024
"""Most UTF-8 bytes of log text in one ReadLogs message: far below the 4 MiB that gRPC clients accept by default."""
LOG_READ_BYTES = 256 * 1024
"""ReadLogs reads the log this much at a time, so its memory stays flat whatever the log's size."""


async def batches(path: Path) -> AsyncIterator[list[str]]:
    """The log as it is when opened (what is appended afterwards is left for the next ReadLogs), in messages
    of at most LOG_LINES_PER_MESSAGE lines and LOG_BYTES_PER_MESSAGE bytes; nothing when there is no log yet
    (the operator has not started). Files are read LOG_READ_BYTES at a time in a worker thread."""
    reader = await asyncio.to_thread(LogReader.open, path)
    if reader is None:
        return
    try:
        while not reader.done:
            for batch in await asyncio.to_thread(reader.next_batches):
                yield batch
    finally:
        reader.close()  # buffered files lock: a read still running in its thread finishes first


class LogReader:
    """A log file read chunk by chunk into messages' worth of lines (:class:`LogLines` splits them)."""

    def __init__(
        self,
        file: BinaryIO,
        *,
        lines_per_message: int = LOG_LINES_PER_MESSAGE,
        bytes_per_message: int = LOG_BYTES_PER_MESSAGE,
        read_bytes: int = LOG_READ_BYTES,
    ) -> None:
        self._file = file
        self._left = file.seek(0, os.SEEK_END)  # its size now: what is appended later is not read
        file.seek(0)
        self._lines = LogLines(bytes_per_message)
        self._lines_per_message = lines_per_message
        self._bytes_per_message = bytes_per_message
        self._read_bytes = read_bytes
        self._batch: list[str] = []
        self._batch_bytes = 0
        self.done = False

    @classmethod
    def open(cls, path: Path) -> LogReader | None:
        try:
            return cls(path.open("rb"))
        except FileNotFoundError:  # the operator has not started yet
            return None

    def close(self) -> None:
        self._file.close()

    def next_batches(self) -> list[list[str]]:
        """Reads the next chunk: the messages it fills; at the end also the last, partly filled, one."""
        data = self._file.read(min(self._read_bytes, self._left)) if self._left > 0 else b""
        self._left -= len(data)
        final = not data or self._left <= 0  # the size it had when opened, or a file truncated meanwhile
        full: list[list[str]] = []
        for line in self._lines.feed(data, final=final):
            size = _utf8_len(line)
            if self._batch and (
                len(self._batch) >= self._lines_per_message or self._batch_bytes + size > self._bytes_per_message
            ):
                full.append(self._batch)
                self._batch, self._batch_bytes = [], 0
            self._batch.append(line)
            self._batch_bytes += size
        if final:
            if self._batch:
                full.append(self._batch)
            self._batch, self._batch_bytes = [], 0
            self.done = True
        return full


class LogLines:
    """Splits UTF-8 bytes, fed chunk by chunk, into the lines ``str.splitlines`` makes of the whole text
    (line ends: ``\\n``, ``\\r\\n``, ``\\r`` and the other Unicode line boundaries; undecodable bytes become
    U+FFFD, a character cut by a chunk boundary is put back together), holding no more than a chunk and one
    message's worth of text.

    A line longer than ``max_bytes`` (UTF-8) comes out as several consecutive entries, each at most
    ``max_bytes`` long and cut between characters; joined, they give the line back. The cuts fall every
    ``max_bytes`` from the line's start (as near as characters allow), wherever the chunks ended.
    """

    def __init__(self, max_bytes: int = LOG_BYTES_PER_MESSAGE) -> None:
        if max_bytes < 4:
            raise ValueError("max_bytes must hold a character (4 bytes)")
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max_bytes = max_bytes
        self._rest = ""  # the last line's start, not yet ended; or a line ended by "\r", which "\n" may follow

    def feed(self, data: bytes, *, final: bool = False) -> list[str]:
        """The lines that ``data`` completes (with ``final``, every line left)."""
        text = self._rest + self._decoder.decode(data, final)
        self._rest = ""
        if not final and text:
            last = text.splitlines(keepends=True)[-1]
            if last.endswith("\r") or last.splitlines()[0] == last:  # "\r\n" may be cut, or no line end yet
                self._rest = last
                text = text[: len(text) - len(last)]
        lines = [piece for line in text.splitlines() for piece in _pieces(line, self._max_bytes)]
        if self._rest:  # a long line is cut as it comes, not held whole
            ending = "\r" if self._rest.endswith("\r") else ""
            pieces = _pieces(self._rest[: len(self._rest) - len(ending)], self._max_bytes)
            lines.extend(pieces[:-1])
            self._rest = pieces[-1] + ending
        return lines


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _pieces(line: str, max_bytes: int) -> list[str]:
    """``line`` cut into pieces of at most ``max_bytes`` UTF-8 bytes (only one when it fits), between characters."""
    if len(line) * 4 <= max_bytes or _utf8_len(line) <= max_bytes:
        return [line]
    if line.isascii():
        return [line[start : start + max_bytes] for start in range(0, len(line), max_bytes)]
    data = line.encode()
    pieces = []
    start = 0
    while len(data) - start > max_bytes:
        end = start + max_bytes
        while data[end] & 0xC0 == 0x80:  # a continuation byte: cut before its character
            end -= 1
        pieces.append(data[start:end].decode())
        start = end
    pieces.append(data[start:].decode())
    return pieces
