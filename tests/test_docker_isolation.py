"""The Docker runtime's isolation and log capture (issue #16), with a real engine and real containers.

Most tests drive :class:`DockerRuntime` directly with an :class:`OperatorSpec` (what they check is the
runtime's); one goes through a server to show the executor's settings reach the container. The user an
operator runs as: the configured default (65532) when the tests run as root, who can give it the output
folder as the executor does; else the tests' own uid (its files must then be the tests' user's, not root's).
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from protos.nvidia.clara.platform import jobs_pb2 as pb
from services.jobs.runtimes import docker_logs
from services.jobs.runtimes.base import MIN_MEMORY_MB, Exit, Mount, OperatorSpec, truncation_marker
from services.jobs.runtimes.docker import DockerRuntime, PathMapping
from services.jobs.runtimes.docker_logs import CappedLog, LogCopy, demultiplex
from tests.jobs_flow import containers_of, run_job, serving

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

MIB = 1024 * 1024
USER = (65532, 65532) if os.geteuid() == 0 else (os.getuid(), os.getgid())
LINE = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_\n"  # 64 bytes: `yes` prints it
assert len(LINE) == 64
YES = f"yes {LINE.decode().strip()}"
INSTANCE = f"isolation-test-{os.getpid()}"
"""The instance label of the containers these tests start (removed after each test, whatever happened)."""


def spec_for(tmp_path: Path, command: str, **changes: object) -> OperatorSpec:
    """A busybox operator running ``sh -c command``, with /output mounted writable (owned by USER)."""
    output = tmp_path / "output"
    output.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        os.chown(output, *USER)  # as the executor does before it starts an operator
    job_id = uuid.uuid4().hex
    fields: dict[str, object] = {
        "job_id": job_id,
        "operator": "op",
        "image": "busybox:latest",
        "command": ("sh", "-c", command),
        "env": {},
        "mounts": (Mount(output, "/output", read_only=False),),
        "cpu": 1,
        "memory_mb": 256,
        "gpu_ids": (),
        "log_path": tmp_path / "logs" / "op.log",
        "labels": {"claret.job": job_id, "claret.operator": "op", "claret.instance": INSTANCE},
        "user": USER,
        **changes,
    }
    return OperatorSpec(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[DockerRuntime]:
    runtime = await DockerRuntime.connect(None, PathMapping(tmp_path, None), INSTANCE)
    try:
        yield runtime
    finally:
        await runtime.close()
        left = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=claret.instance={INSTANCE}"], capture_output=True, text=True
        ).stdout.split()
        if left:
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True)


def log_of(spec: OperatorSpec) -> bytes:
    """The operator's log so far (none yet: empty)."""
    try:
        return spec.log_path.read_bytes()
    except FileNotFoundError:
        return b""


async def inspect(runtime_id: str) -> dict[str, object]:
    docker = aiodocker.Docker()
    try:
        return await (await docker.containers.get(runtime_id)).show()
    finally:
        await docker.close()


async def run(runtime: DockerRuntime, spec: OperatorSpec, within: float = 20) -> tuple[Exit, float]:
    """Start, wait; the exit and the seconds it took."""
    started = time.monotonic()
    handle = await runtime.start(spec)
    exit = await asyncio.wait_for(handle.wait(), within)
    return exit, time.monotonic() - started


# -- #7: the operator's user -------------------------------------------------------------------------------


async def test_operator_runs_as_the_given_user_and_leaves_no_root_owned_setuid_file(
    runtime: DockerRuntime, tmp_path: Path
) -> None:
    spec = spec_for(
        tmp_path,
        "id -u; id -g; echo data > /output/made && cp /bin/busybox /output/suid && chmod 4755 /output/suid"
        " && cp /bin/busybox /output/sgid && chmod 2755 /output/sgid",
    )
    exit, _ = await run(runtime, spec)
    assert exit.code == 0, (exit, spec.log_path.read_text())
    assert spec.log_path.read_text().splitlines() == [str(USER[0]), str(USER[1])]
    output = tmp_path / "output"
    made = (output / "made").stat()
    assert (made.st_uid, made.st_gid) == USER and (output / "made").read_text() == "data\n"
    for path in output.iterdir():
        info = path.lstat()
        special = info.st_mode & (stat.S_ISUID | stat.S_ISGID)
        assert info.st_uid == USER[0], f"{path.name} is owned by uid {info.st_uid}"
        assert not (special and (info.st_uid == 0 or info.st_gid == 0)), f"{path.name} is a root setuid/setgid file"


# -- #8: processes -----------------------------------------------------------------------------------------


async def test_a_fork_bomb_stops_at_the_pids_limit(runtime: DockerRuntime, tmp_path: Path) -> None:
    """A subshell forks until it cannot (a failed fork ends a busybox shell); the main shell, which must
    fork no more, then becomes a sleep that holds the container while its processes are counted."""
    fork_bomb = "(for i in $(seq 200); do sleep 30 & done); echo spawned; exec sleep 30"
    spec = spec_for(tmp_path, fork_bomb, pids_limit=50)
    handle = await runtime.start(spec)
    try:
        deadline = time.monotonic() + 10
        while b"spawned" not in log_of(spec):
            assert time.monotonic() < deadline, log_of(spec)
            await asyncio.sleep(0.05)
        docker = aiodocker.Docker()
        try:
            top = await (await docker.containers.get(handle.runtime_id)).top()
        finally:
            await docker.close()
        assert 10 < len(top["Processes"]) <= 50, len(top["Processes"])
        assert b"can't fork" in log_of(spec)
        assert (await inspect(handle.runtime_id))["HostConfig"]["PidsLimit"] == 50  # type: ignore[index]
    finally:
        await handle.stop(0)
        exit = await asyncio.wait_for(handle.wait(), 20)
    assert exit.code != 0


# -- #9: limits whatever the requests ----------------------------------------------------------------------


async def test_a_request_of_zero_still_gets_memory_cpu_and_swap_limits(runtime: DockerRuntime, tmp_path: Path) -> None:
    """/dev/shm is a tmpfs (64 MiB) whose pages count toward the container's memory: 48 MiB there is past
    the floor of 32 MiB, and with no swap beyond the limit the operator is killed."""
    spec = spec_for(tmp_path, "dd if=/dev/zero of=/dev/shm/fill bs=1M count=48 && echo survived", cpu=0, memory_mb=0)
    handle = await runtime.start(spec)
    host = (await inspect(handle.runtime_id))["HostConfig"]
    exit = await asyncio.wait_for(handle.wait(), 20)
    assert host["Memory"] == host["MemorySwap"] == MIN_MEMORY_MB * MIB  # type: ignore[index]
    assert host["NanoCpus"] == 1_000_000_000 and host["PidsLimit"] == 4096  # type: ignore[index]
    assert exit.code != 0 and "out of memory" in exit.message, (exit, spec.log_path.read_text())
    assert "survived" not in spec.log_path.read_text()


# -- #11 and the cap: logs ---------------------------------------------------------------------------------


async def test_a_200_mib_log_is_kept_whole(runtime: DockerRuntime, tmp_path: Path) -> None:
    size = 200 * MIB
    spec = spec_for(tmp_path, f"{YES} | head -c {size}")
    exit, seconds = await run(runtime, spec, within=30)
    assert exit == Exit(0), exit
    assert spec.log_path.stat().st_size == size
    expected = LINE * (MIB // len(LINE))
    with open(spec.log_path, "rb") as log_file:
        for _ in range(size // MIB):
            assert log_file.read(MIB) == expected
    print(f"200 MiB log copied in {seconds:.1f} s ({size / MIB / seconds:.0f} MiB/s)")


async def test_a_log_past_its_cap_is_cut_with_a_marker_and_the_operator_is_not_blocked(
    runtime: DockerRuntime, tmp_path: Path
) -> None:
    cap, written = 1 * MIB, 20 * MIB
    spec = spec_for(tmp_path, f"{YES} | head -c {written}; echo finished > /output/done", max_log_bytes=cap)
    exit, seconds = await run(runtime, spec)
    assert exit == Exit(0, log_truncated=True), exit
    assert (tmp_path / "output" / "done").read_text() == "finished\n"  # ran to its end
    assert spec.log_path.read_bytes() == LINE * (cap // len(LINE)) + truncation_marker(cap)
    assert seconds < 10


async def test_output_is_kept_byte_for_byte_and_a_log_at_its_cap_is_not_truncated(
    runtime: DockerRuntime, tmp_path: Path
) -> None:
    """stdout and stderr both, bytes that are no UTF-8, no final newline; exactly the cap is no truncation."""
    expected = b"out\nerr \xff\xfe\xc3\nend"
    command = "printf 'out\\n'; sleep 0.2; printf 'err \\377\\376\\303\\n' >&2; sleep 0.2; printf end"
    spec = spec_for(tmp_path, command, max_log_bytes=len(expected))
    exit, _ = await run(runtime, spec)
    assert exit == Exit(0) and spec.log_path.read_bytes() == expected


async def test_the_engine_keeps_a_bounded_copy_that_a_restarted_service_rereads(
    runtime: DockerRuntime, tmp_path: Path
) -> None:
    """The service dies while the operator runs (its connection to the engine goes with it); a new runtime
    re-attaches, rewrites the log from the engine's copy and follows it to the operator's end."""
    spec = spec_for(tmp_path, "echo before; sleep 1.5; echo after", max_log_bytes=2 * MIB)
    first = await DockerRuntime.connect(None, PathMapping(tmp_path, None), INSTANCE)
    handle = await first.start(spec)
    while b"before" not in log_of(spec):
        await asyncio.sleep(0.05)
    log_config = (await inspect(handle.runtime_id))["HostConfig"]["LogConfig"]  # type: ignore[index]
    assert log_config == {"Type": "json-file", "Config": {"max-file": "2", "max-size": str(1 * MIB)}}
    await first.close()
    spec.log_path.write_bytes(b"whatever the old copy held\n")
    handle = await runtime.attach(spec, handle.runtime_id)
    assert handle is not None
    exit = await asyncio.wait_for(handle.wait(), 20)
    assert exit == Exit(0), exit
    assert spec.log_path.read_bytes() == b"before\nafter\n"


async def test_a_stream_broken_while_the_operator_runs_is_said_in_the_exit_and_the_log(
    runtime: DockerRuntime, tmp_path: Path
) -> None:
    """The connection to the engine breaks mid-copy (here: its socket is cut; at a frame boundary, so the
    stream looks as if it had ended): the operator still runs to its end and the exit says so."""
    spec = spec_for(tmp_path, "echo before; sleep 1; echo after")
    handle = await runtime.start(spec)
    while b"before" not in log_of(spec):
        await asyncio.sleep(0.02)
    connection = handle._logs._response.connection  # type: ignore[attr-defined]
    connection.transport.abort()
    exit = await asyncio.wait_for(handle.wait(), 20)
    assert exit.code == 0 and "log stream from the Docker engine broke" in exit.message, exit
    text = log_of(spec).decode()
    assert text.startswith("before\n") and "[claret: the log stream from the Docker engine broke" in text, text


class Chunks:
    """A stand-in for an aiohttp StreamReader that hands ``data`` over ``size`` bytes at a time."""

    def __init__(self, data: bytes, size: int) -> None:
        self._parts = [data[i : i + size] for i in range(0, len(data), size)]

    async def readany(self) -> bytes:
        return self._parts.pop(0) if self._parts else b""


def frames(*parts: tuple[int, bytes]) -> bytes:
    return b"".join(bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data for stream, data in parts)


@pytest.mark.parametrize("size", [1, 3, 8, 9, 17, 4096])
async def test_demultiplexing_is_exact_whatever_the_chunks_and_cuts_at_the_cap(tmp_path: Path, size: int) -> None:
    stream = frames((1, b"out 1\n"), (2, b"err \xff\n"), (1, b""), (1, b"x" * 100), (2, b"tail"))
    whole = b"out 1\nerr \xff\n" + b"x" * 100 + b"tail"
    for cap, expected in [(len(whole), whole), (20, whole[:20] + truncation_marker(20))]:
        log_file = CappedLog(tmp_path / f"log-{cap}", cap, rewrite=True)
        await demultiplex(Chunks(stream, size), log_file)  # type: ignore[arg-type]
        log_file.close()
        assert (tmp_path / f"log-{cap}").read_bytes() == expected
        assert log_file.truncated == (cap < len(whole))
    with pytest.raises(ConnectionError):
        await demultiplex(Chunks(stream[:-2], size), CappedLog(tmp_path / "cut", 1000, rewrite=True))  # type: ignore[arg-type]


class Endless:
    """A stand-in for an engine response whose stream never ends and brings nothing."""

    closed = False

    @property
    def content(self) -> Endless:
        return self

    async def readany(self) -> bytes:
        await asyncio.Event().wait()
        return b""

    def close(self) -> None:
        self.closed = True


async def test_a_stream_that_never_ends_after_the_exit_is_given_up_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docker_logs, "STALLED_AFTER_EXIT", 0.2)
    response = Endless()
    log_file = CappedLog(tmp_path / "log", MIB, rewrite=True)
    copy = LogCopy(None, log_file, response)  # type: ignore[arg-type]
    problem = await asyncio.wait_for(copy.finish(), 5)
    assert "stalled" in problem and response.closed and copy.task.cancelled()
    assert b"[claret: the log stream from the Docker engine stalled" in (tmp_path / "log").read_bytes()


# -- through a server ---------------------------------------------------------------------------------------


async def test_the_executor_runs_operators_as_the_configured_user_with_a_capped_log(tmp_path: Path) -> None:
    changes = {"operator_uid": USER[0], "operator_gid": USER[1], "max_log_mb": 1, "pids_limit": 64}
    async with serving(tmp_path, runtime="docker", **changes) as clara:
        pids_max = "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"
        command = f"id -u; id -g; {pids_max}; {YES} | head -c {3 * MIB}"
        pipeline = f"""api-version: 0.4.0
name: isolation
operators:
- name: op
  container:
    image: busybox
    command: ["sh", "-c", {command!r}]
  requests: {{cpu: 1, memory: 64}}
"""
        final, _ = await run_job(clara, pipeline, within=20)
        assert final.status == pb.JOB_STATUS_HEALTHY, final.messages
        assert any("log truncated at 1 MiB" in m for m in final.messages), final.messages
        log_file = tmp_path / "data" / "logs" / final.job_id.value / "op.log"
        content = log_file.read_bytes()
        assert content.startswith(f"{USER[0]}\n{USER[1]}\n64\n".encode())
        assert len(content) == MIB + len(truncation_marker(MIB)) and content.endswith(truncation_marker(MIB))
        assert containers_of(final.job_id.value) == []
