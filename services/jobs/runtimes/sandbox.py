"""The ``sandbox`` runtime: each operator's command runs as a host process inside a bubblewrap sandbox.

The sandbox shows the operator the paths a container would see (inputs read-only, outputs writable),
the host's /usr and /etc read-only, a private /tmp, its own PID namespace and no network. The image
is not used. stdout and stderr go straight to the operator's log file, so logs survive a restart of
the service, and bwrap's ``--json-status-fd`` records the exit code in a status file beside the log so
an operator that outlived a restart can be re-attached (through a pidfd: no polling) and its exit read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.jobs.runtimes.base import Exit, Handle, NeverStarted, OperatorSpec, RuntimeFailure
from shared.logging import get_logger

log = get_logger(__name__)

HOST_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
"""Shown read-only (or as the same symlink, on merged-/usr systems) so that commands find their tools."""
KILLED = 137


def status_path(spec: OperatorSpec) -> Path:
    """bwrap's status file: bwrap itself writes its child's pid there as it starts, then the exit code, so
    a file with nothing in it means the operator never got going (the service died around the spawn)."""
    return spec.log_path.with_suffix(".status")


def ever_started(spec: OperatorSpec) -> bool:
    try:
        return status_path(spec).stat().st_size > 0
    except FileNotFoundError:
        return False


@functools.cache
def host_root() -> tuple[str, ...]:
    """bwrap arguments that show the host's system folders read-only (read once: they do not change)."""
    args: list[str] = []
    for name in HOST_DIRS:
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{name}"]
    return tuple(args)


def bwrap_arguments(spec: OperatorSpec, status_fd: int) -> list[str]:
    """The bwrap command line for ``spec`` (the new root is an empty tmpfs; we add what it needs)."""
    if not spec.command:
        raise RuntimeFailure(
            f"operator {spec.operator!r} has no command: the sandbox runtime does not use "
            f"images, so container.command must say what to run"
        )
    # No --die-with-parent: a sandbox must outlive a crash of the service, which re-attaches to it.
    args = ["bwrap", "--unshare-all", "--share-net" if spec.network else "--unshare-net", "--cap-drop", "ALL"]
    args += host_root()
    args += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--chdir", "/"]
    for mount in spec.mounts:
        args += ["--ro-bind" if mount.read_only else "--bind", str(mount.source), mount.target]
    args += ["--clearenv"]
    # The job and operator names are always there: find_sandbox() looks for them on the command line.
    identity = {"NVIDIA_CLARA_JOB_ID": spec.job_id, "NVIDIA_CLARA_STAGE_NAME": spec.operator}
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/tmp",
        **spec.env,
        **identity,
    }
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [*args, "--json-status-fd", str(status_fd), "--", *spec.command]


def read_exit_code(path: Path) -> int | None:
    """The exit code bwrap wrote to its status file, or None if it never wrote one (it was killed)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            status = json.loads(line)
            if "exit-code" in status:
                return int(status["exit-code"])
    return None


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: tells a process from a later one that reused its pid. None when the
    process is gone (a zombie counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def group_members(pgid: int) -> list[int]:
    """Processes of one process group (the sandbox leads its own), from /proc."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def find_sandbox(job_id: str, operator: str) -> int | None:
    """The outer bwrap process (it leads its process group) running ``operator`` of ``job_id``, found by
    the environment it was told to set, which its command line carries."""
    wanted = [("NVIDIA_CLARA_JOB_ID", job_id), ("NVIDIA_CLARA_STAGE_NAME", operator)]
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            args = Path(f"/proc/{entry.name}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not args or Path(args[0]).name != "bwrap" or os.getpgid(int(entry.name)) != int(entry.name):
            continue
        pairs = {(args[i + 1], args[i + 2]) for i, arg in enumerate(args[:-2]) if arg == "--setenv"}
        if all(pair in pairs for pair in wanted):
            return int(entry.name)
    return None


def spawn(bwrap: str, args: list[str], log_fd: int, status_fd: int) -> int:
    """Start bwrap with posix_spawn: no fork of this multi-threaded process (gRPC's threads), so nothing
    can run in a half-copied child before the exec. It leads a new session (signals reach its group);
    stdin is /dev/null, stdout and stderr share the log file, and the status descriptor stays open."""
    os.set_inheritable(status_fd, True)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, log_fd, 1),
        (os.POSIX_SPAWN_DUP2, log_fd, 2),
    ]
    return os.posix_spawn(bwrap, [bwrap, *args[1:]], os.environ, file_actions=actions, setsid=True)


def watch_exit(pid: int, *, reap: bool) -> asyncio.Future[int | None]:
    """A future for the end of ``pid``, through a pidfd (readable once the process ended: no polling).
    A child of ours is reaped and its exit status given; another process's status is unknowable (None)."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[int | None] = loop.create_future()
    pidfd = os.pidfd_open(pid)

    def on_exit() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        code = None
        if reap:
            with contextlib.suppress(ChildProcessError):
                code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if not exited.done():
            exited.set_result(code)

    loop.add_reader(pidfd, on_exit)
    return exited


class SandboxHandle:
    """A sandboxed operator: the bwrap process leads its own process group, so signals reach the group."""

    def __init__(
        self, pid: int, status_file: Path, exited: asyncio.Future[int | None], start_time: str | None = None
    ) -> None:
        self.pid = pid
        self._status_file = status_file
        self._exited = exited
        self._start_time = start_time or process_start_time(pid) or "0"

    @property
    def runtime_id(self) -> str:
        return f"{self.pid}:{self._start_time}"

    async def wait(self) -> Exit:
        code = await asyncio.shield(self._exited)
        recorded = read_exit_code(self._status_file)
        if recorded is not None:
            return Exit(recorded)
        return Exit(KILLED if code is None else code, "the sandbox ended without reporting an exit code")

    async def stop(self, grace: float) -> None:
        """SIGTERM to the operator's processes, SIGKILL to the whole sandbox after ``grace`` seconds.

        The outer bwrap process is spared the SIGTERM: it would die at once and take the sandbox's
        PID namespace with it, so the operator would get no grace period at all.
        """
        if self._exited.done():  # gone already; its pid may belong to someone else by now
            return
        for pid in group_members(self.pid):
            if pid != self.pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            await asyncio.shield(self._exited)


class SandboxRuntime:
    name = "sandbox"

    def __init__(self, bwrap: str = "bwrap") -> None:
        path = shutil.which(bwrap)
        if path is None:
            raise RuntimeFailure("the sandbox runtime needs bubblewrap (Debian package 'bubblewrap')")
        self._bwrap = path

    async def start(self, spec: OperatorSpec) -> Handle:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Opening two local files is instant; the child needs real descriptors, not async streams.
        with open(spec.log_path, "ab") as log_file, open(status_path(spec), "wb") as status:  # noqa: ASYNC230
            args = bwrap_arguments(spec, status.fileno())
            try:
                pid = spawn(self._bwrap, args, log_file.fileno(), status.fileno())
            except OSError as exc:
                raise RuntimeFailure(f"cannot start bwrap for operator {spec.operator!r}: {exc}") from exc
        try:
            exited = watch_exit(pid, reap=True)
        except OSError as exc:  # no pidfd (descriptors exhausted): do not leave it running unwatched
            os.killpg(pid, signal.SIGKILL)
            await asyncio.to_thread(os.waitpid, pid, 0)
            raise RuntimeFailure(f"cannot watch the sandbox of operator {spec.operator!r}: {exc}") from exc
        log.debug("sandbox started", job_id=spec.job_id, operator=spec.operator, pid=pid)
        return SandboxHandle(pid, status_path(spec), exited)

    async def attach(self, spec: OperatorSpec, runtime_id: str | None) -> Handle | None:
        """Re-attach to a sandbox started by an earlier run of the service (it is no child of ours): by its
        recorded pid, else by its command line. One that ended while the service was down is still found
        when bwrap recorded its exit code."""
        if runtime_id is None:
            pid = find_sandbox(spec.job_id, spec.operator)
            if pid is None and not ever_started(spec):  # not running, and bwrap never wrote a word
                raise NeverStarted(f"no sandbox was started for operator {spec.operator!r}")
            runtime_id = f"{pid}:{process_start_time(pid)}" if pid else "0:0"
        pid_text, _, start_time = runtime_id.partition(":")
        if not pid_text.isdigit():
            return None
        pid = int(pid_text)
        if pid == 0 or process_start_time(pid) != start_time:
            if read_exit_code(status_path(spec)) is None:
                return None
            exited = asyncio.get_running_loop().create_future()
            exited.set_result(None)
            return SandboxHandle(pid, status_path(spec), exited, start_time)
        try:
            return SandboxHandle(pid, status_path(spec), watch_exit(pid, reap=False), start_time)
        except OSError:  # it ended in between
            return await self.attach(spec, runtime_id)

    async def problem(self) -> str | None:
        return None if os.access(self._bwrap, os.X_OK) else f"bubblewrap ({self._bwrap}) is gone"

    async def remove_orphans(self, running: Callable[[], Awaitable[set[tuple[str, str]]]]) -> list[str]:
        """Nothing is removed: every sandbox the database knows is re-attached. One started in the instant
        between bwrap's start and the database write of its pid is not found (a known gap)."""
        return []

    async def close(self) -> None:
        return None
