"""Jobs.ReadLogs streams an operator's log: bounded reads and messages, flat memory whatever the log's size.

The line splitting is tested on its own (``LogLines``, ``LogReader``: fast, every chunk boundary); the
service over real servers. Those tests create the job through the API and write its operator's log file
themselves, where the runtime writes it (``<data_dir>/logs/<job_id>/<operator>.log``, Executor.log_path):
ReadLogs reads that file whoever wrote it, so they do not depend on a runtime. ReadLogs touches the store
only to find the job's operators, so these tests run on SQLite alone.
"""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import grpc
import pytest

from protos.nvidia.clara.platform import common_pb2, jobs_pb2_grpc
from protos.nvidia.clara.platform import jobs_pb2 as pb
from services.jobs.logs import LOG_BYTES_PER_MESSAGE, LOG_LINES_PER_MESSAGE, LogLines, LogReader
from shared.config import Settings
from tests.helpers import RunningServer
from tests.jobs_flow import DATA, Platform

KIB = 1024
MIB = 1024 * KIB
LINE = "0123456789abcdefghijklmnopqrstuvwxyz0123456789"
DEFAULT_CLIENT_LIMIT = 4 * MIB  # gRPC clients' default max_receive_message_length


def split(data: bytes, chunk: int, max_bytes: int = 64) -> list[str]:
    """What LogLines makes of ``data`` fed ``chunk`` bytes at a time."""
    lines = LogLines(max_bytes)
    found: list[str] = []
    for start in range(0, len(data), chunk):
        found += lines.feed(data[start : start + chunk])
    return found + lines.feed(b"", final=True)


def batches_of(data: bytes, **limits: int) -> list[list[str]]:
    reader = LogReader(io.BytesIO(data), **limits)
    found: list[list[str]] = []
    while not reader.done:
        found += reader.next_batches()
    return found


# The line splitting on its own


@pytest.mark.parametrize(
    "text",
    [
        "",
        "one\ntwo\nthree\n",
        "one\r\ntwo\r\n\r\nthree",  # \r\n ends a line once; the empty line stays
        "a\rb\r\r\nc\n\n",
        "no line end at all",
        "\n\n\n",
        "tab\tand\x0bvertical\x0cfeeds\x1c\x1d\x1e\x85\u2028\u2029end",  # the other line boundaries of splitlines
    ],
)
def test_lines_are_those_splitlines_makes_of_the_whole_log_at_every_chunk_size(text: str) -> None:
    data = text.encode()
    for chunk in range(1, len(data) + 2):
        assert split(data, chunk) == text.splitlines(), chunk


def test_multibyte_characters_cut_by_chunks_survive_and_bad_bytes_become_replacement_characters() -> None:
    data = "é€😀 mixed\r\n".encode() * 5 + b"bad \xff\xfe byte\ncut \xe2\x82"  # the log ends inside a character
    expected = data.decode("utf-8", errors="replace").splitlines()  # what ReadLogs made of it before
    assert expected[-1] == "cut \ufffd"
    for chunk in range(1, 24):
        assert split(data, chunk) == expected, chunk


def test_a_line_longer_than_a_message_comes_as_consecutive_pieces_cut_between_characters() -> None:
    long_line = "ab€" * 100  # 500 bytes
    data = f"before\n{long_line}\r\nafter".encode()
    for chunk in (1, 3, 7, 64, 1000):
        lines = split(data, chunk, max_bytes=64)
        assert lines[0] == "before" and lines[-1] == "after"
        pieces = lines[1:-1]
        assert "".join(pieces) == long_line
        assert all(len(piece.encode()) <= 64 for piece in pieces)
        assert [len(piece.encode()) for piece in pieces] == [62, 64, 64, 62, 64, 64, 62, 58]  # wherever chunks end
    # a line of exactly the limit is one entry, even when its "\r\n" is cut by a chunk boundary
    assert split(b"x" * 64 + b"\r\nnext", 65, max_bytes=64) == ["x" * 64, "next"]


def test_messages_hold_at_most_so_many_lines_and_bytes() -> None:
    data = b"".join(f"line {i}\n".encode() for i in range(50)) + b"y" * 300 + b"\nlast"
    batches = batches_of(data, lines_per_message=7, bytes_per_message=100, read_bytes=13)
    assert [line for batch in batches for line in batch] == [f"line {i}" for i in range(50)] + ["y" * 100] * 3 + [
        "last"
    ]
    assert all(1 <= len(batch) <= 7 and sum(len(line.encode()) for line in batch) <= 100 for batch in batches)
    assert [len(batch) for batch in batches[:8]] == [7, 7, 7, 7, 7, 7, 7, 1]  # full messages, not one per read
    assert batches_of(b"") == []


def test_reads_what_the_log_held_when_opened(tmp_path: Path) -> None:
    log = tmp_path / "op.log"
    log.write_bytes(b"first\nsecond\npartial")
    reader = LogReader.open(log)
    assert reader is not None
    with log.open("ab") as more:
        more.write(b" line\nwritten later\n")
    found: list[str] = []
    while not reader.done:
        found += [line for batch in reader.next_batches() for line in batch]
    reader.close()
    assert found == ["first", "second", "partial"]
    assert LogReader.open(tmp_path / "missing.log") is None


# Over a real server


def log_file(settings: Settings, job_id: str, operator: str) -> Path:
    """Where the runtime writes the operator's log (Executor.log_path)."""
    path = settings.logs_path / job_id / f"{operator}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def logs_request(job_id: str, operator: str) -> pb.JobsReadLogsRequest:
    return pb.JobsReadLogsRequest(job_id=common_pb2.Identifier(value=job_id), operator_name=operator)


async def read_logs(stub: jobs_pb2_grpc.JobsStub, job_id: str, operator: str) -> list[pb.JobsReadLogsResponse]:
    return [reply async for reply in stub.ReadLogs(logs_request(job_id, operator))]


async def test_logs_over_the_service(platform: RunningServer) -> None:
    """No log yet: one message with the header. Otherwise every message carries the header and stays far
    under a client's default limit, a 10 MiB line without a line end comes whole when its pieces are joined,
    and \\r\\n endings and characters cut by read boundaries come as before."""
    async with platform.channel() as channel:
        clara = Platform(channel, platform.settings.database_target)
        job_id = (await clara.job(await clara.pipeline((DATA / "two_operators.yaml").read_text()))).job_id.value

        replies = await read_logs(clara.jobs, job_id, "copier")
        assert len(replies) == 1 and replies[0].header.code == 0 and list(replies[0].logs) == []
        assert replies[0].job_id.value == job_id and replies[0].operator_name == "copier"

        huge = "x" * (10 * MIB)
        log_file(platform.settings, job_id, "copier").write_text(f"start\r\n{huge}", encoding="utf-8")
        replies = await read_logs(clara.jobs, job_id, "copier")
        assert all(reply.header.code == 0 and reply.job_id.value == job_id for reply in replies)
        assert all(reply.ByteSize() < LOG_BYTES_PER_MESSAGE + 64 * KIB < DEFAULT_CLIENT_LIMIT for reply in replies)
        lines = [line for reply in replies for line in reply.logs]
        assert lines[0] == "start" and len(lines) == 1 + 10
        assert "".join(lines[1:]) == huge

        text = "".join(f"{i} é€😀\r\n" for i in range(200_000))  # 3.4 MB: reads end inside characters
        log_file(platform.settings, job_id, "shouter").write_bytes(text.encode())
        replies = await read_logs(clara.jobs, job_id, "SHOUTER")  # operator names match without case
        assert [line for reply in replies for line in reply.logs] == text.splitlines()
        assert all(len(reply.logs) <= LOG_LINES_PER_MESSAGE for reply in replies)
        assert all(reply.header.code == 0 for reply in replies)


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory since it started (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def open_by(pid: int, path: Path) -> bool:
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            continue
    return False


def write_log(path: Path, size: int) -> None:
    """``size`` bytes of LINE lines (the last one cut short), written a block at a time."""
    block = (LINE + "\n").encode() * (MIB // (len(LINE) + 1))
    with path.open("wb") as file:
        while size > 0:
            file.write(block[:size])
            size -= len(block[:size])


async def test_a_200_mib_log_reads_in_flat_memory(served: RunningServer) -> None:
    """The server (a process of its own) reads a 200 MiB log of short lines with its peak RSS growing by
    under 32 MiB, measured from after a 4 MiB ReadLogs warmed it up; a client that goes away mid-log leaves
    no file open behind it."""
    assert served.pid is not None
    size = 200 * MIB
    async with served.channel() as channel:
        clara = Platform(channel, served.settings.database_target)
        job_id = (await clara.job(await clara.pipeline((DATA / "two_operators.yaml").read_text()))).job_id.value
        write_log(log_file(served.settings, job_id, "shouter"), 4 * MIB)
        big = log_file(served.settings, job_id, "copier")
        write_log(big, size)

        warm = [line for reply in await read_logs(clara.jobs, job_id, "shouter") for line in reply.logs]
        assert len(warm) == -(-4 * MIB // (len(LINE) + 1))
        before = peak_rss_mib(served.pid)

        count = received = wrong = messages = 0
        first = last = ""
        async for reply in clara.jobs.ReadLogs(logs_request(job_id, "copier")):
            assert reply.header.code == 0
            messages += 1
            logs = reply.logs
            if not count:
                first = logs[0]
            count += len(logs)
            received += sum(len(line) + 1 for line in logs)
            wrong += sum(line != LINE for line in logs)
            last = logs[-1]
        after = peak_rss_mib(served.pid)

        whole, cut = divmod(size, len(LINE) + 1)
        assert count == whole + 1 and received == size + 1 and messages == -(-count // LOG_LINES_PER_MESSAGE)
        assert first == LINE and last == LINE[:cut] and wrong == 1  # only the last line is cut short
        assert after - before < 32, f"peak RSS grew from {before:.0f} to {after:.0f} MiB"

        call = clara.jobs.ReadLogs(logs_request(job_id, "copier"))
        async for _reply in call:
            break
        call.cancel()
        for _ in range(200):
            if not open_by(served.pid, big):
                break
            await asyncio.sleep(0.05)
        assert not open_by(served.pid, big)
        assert (await clara.status(job_id)).header.code == 0  # and the server is well


async def test_unknown_operator_is_refused(platform: RunningServer) -> None:
    async with platform.channel() as channel:
        clara = Platform(channel, platform.settings.database_target)
        job_id = (await clara.job(await clara.pipeline((DATA / "two_operators.yaml").read_text()))).job_id.value
        try:
            replies = await read_logs(clara.jobs, job_id, "nobody")
        except grpc.aio.AioRpcError as error:  # pragma: no cover - the header carries errors in this API
            raise AssertionError(f"ReadLogs failed on the wire: {error}") from error
        assert len(replies) == 1 and replies[0].header.code != 0
        assert "no operator named 'nobody'" in " ".join(replies[0].header.messages)
