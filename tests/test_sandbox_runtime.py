"""The sandbox runtime's own bookkeeping, on real bwrap processes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from services.jobs.runtimes import sandbox
from services.jobs.runtimes.base import NeverStarted, OperatorSpec


def spec(tmp_path: Path, command: str = "true") -> OperatorSpec:
    return OperatorSpec(
        job_id="a" * 32,
        operator="op",
        image="busybox",
        command=("sh", "-c", command),
        env={},
        mounts=(),
        cpu=0,
        memory_mb=0,
        gpu_ids=(),
        log_path=tmp_path / "logs" / "op.log",
    )


class Crash(BaseException):
    """The service dying between opening the status file and spawning bwrap."""


async def test_a_start_cut_short_before_the_spawn_is_known_as_never_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = sandbox.SandboxRuntime()

    def crash(*_args: object) -> int:
        raise Crash

    monkeypatch.setattr(sandbox, "spawn", crash)
    with pytest.raises(Crash):
        await runtime.start(spec(tmp_path))
    monkeypatch.undo()
    with pytest.raises(NeverStarted):
        await runtime.attach(spec(tmp_path), None)


async def test_a_started_sandbox_is_found_again_by_its_command_line(tmp_path: Path) -> None:
    runtime = sandbox.SandboxRuntime()
    handle = await runtime.start(spec(tmp_path, "echo found; sleep 0.5"))
    found = await runtime.attach(spec(tmp_path, "echo found; sleep 0.5"), None)
    assert found is not None and found.runtime_id == handle.runtime_id
    assert (await handle.wait()).code == 0
    assert (tmp_path / "logs" / "op.log").read_text() == "found\n"


def test_a_sandbox_still_joining_its_control_group_is_found_by_its_command_line(tmp_path: Path) -> None:
    """Before the sh that joins the control group has exec'd bwrap, its command line is sh's, with
    bwrap's arguments after its own: a restart in that instant must not take the operator for never started."""
    fds = sandbox.Descriptors()
    with open(tmp_path / "status", "wb") as status:
        args = sandbox.bwrap_arguments(spec(tmp_path), fds, status.fileno(), None)
    fds.close()
    # "; exit": a lone command would be exec'd by sh at once, taking the arguments out of its command line.
    joining = subprocess.Popen(["/bin/sh", "-c", "sleep 5; exit", "claret-join", "--", *args], start_new_session=True)
    try:
        # Popen returns once the exec is under way; the kernel fills in the new command line a moment later.
        deadline = time.monotonic() + 5
        while b"claret-join" not in Path(f"/proc/{joining.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sandbox.find_sandbox("a" * 32, "op") == joining.pid
        assert sandbox.find_sandbox("b" * 32, "op") is None
    finally:
        joining.kill()
        joining.wait()
