"""The ``sandbox`` runtime: each operator's command runs as a host process inside a bubblewrap sandbox.

The sandbox shows the operator the paths a container would see (inputs read-only, outputs writable),
the host's /usr read-only, a minimal /etc (generated passwd and group, the host's loader cache and
alternatives, nothing secret), a private /tmp, its own PID, IPC and UTS namespaces and no network. The
image is not used. What keeps a hostile operator in (each point has a test in tests/test_sandbox_isolation.py):

- A service running as root runs bwrap privileged (the mounts are made by root, so payloads may sit
  in folders only root can enter) with no user namespace, which would map the sandbox to host root,
  keeping only CAP_SETUID and CAP_SETGID; the static helper ``claret-sandbox-exec drop``
  (``sandbox_exec.c``, bound read-only at /.claret-sandbox-exec; where it is not installed, ``setpriv``
  and then ``env``) switches the operator to the configured unprivileged uid and gid, with no
  supplementary groups, no capabilities and no_new_privs, and only then sets the pipeline's variables.
  No mount may cover the system's folders or the helper, or sit inside another mount
  (:func:`check_mounts`). A service that is not root runs bwrap in a user namespace of its own user,
  with further user namespaces disabled.
- A seccomp filter (:mod:`.seccomp`) refuses what a container runtime refuses by default: new
  namespaces, mount, keyctl (the service's session keyring), ptrace, bpf, module loading...
- bwrap itself starts with PATH alone in its environment and no inherited descriptor but its own, and
  the operator with default signal dispositions (a service ignores SIGPIPE; ``yes | head`` must end).
- GPUs: the minimal /dev holds only the granted GPUs' device nodes and the driver's control nodes
  (:func:`shared.gpus.device_nodes`), so a CUDA program sees those GPUs and no other.
- A control group per operator (:mod:`.cgroups`) limits memory, cpu and processes. When the operator's
  command ends, everything it left behind (a ``setsid`` child included) is killed with the group and
  the sandbox's PID namespace.

stdout and stderr go straight to the operator's log file, so logs survive a restart of the service; the
runtime trims a log that grows past its cap. bwrap's ``--json-status-fd`` records the exit code in a
status file beside the log so an operator that outlived a restart can be re-attached (through a pidfd:
no polling) and its exit read.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import functools
import json
import os
import posixpath
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

from services.jobs.runtimes import netns, seccomp
from services.jobs.runtimes.base import (
    INSTANCE_LABEL,
    SERVICES_JOB,
    Exit,
    Handle,
    Mount,
    NeverStarted,
    OperatorSpec,
    RuntimeFailure,
    ServiceNetwork,
    joined_network,
    memory_limit_bytes,
    truncation_marker,
)
from services.jobs.runtimes.cgroups import Cgroups, CgroupsUnavailable, Limits, OperatorGroup
from shared import gpus
from shared.logging import get_logger

log = get_logger(__name__)

HOST_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
"""Shown read-only (or as the same symlink, on merged-/usr systems) so that commands find their tools."""
HOST_ETC = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "nsswitch.conf",
    "host.conf",
    "hosts",
    "resolv.conf",
    "protocols",
    "services",
    "mime.types",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "os-release",
    "debian_version",
)
"""What the sandbox's /etc shows of the host's (where present): what programs read, nothing secret.
Copied at the service's start (:func:`sandbox_etc`)."""
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SETPRIV = "/usr/bin/setpriv"
ENV = "/usr/bin/env"
"""Run by absolute path, from the host's /usr that no mount may cover (:func:`check_mounts`)."""
FALLBACK_USER = (65532, 65532)
"""Operators of a root service run as this uid and gid when the spec names no user (never as root)."""
INSTANCE_VARIABLE = "CLARET_INSTANCE"
"""Set in every sandbox to its platform instance, as Docker labels containers."""
KILLED = 137
KEYCTL_JOIN_SESSION_KEYRING = 1
ALLOCATION_SLACK = 1 << 20
"""Space a log may hold allocated past its end (filesystems preallocate a little) before it is freed."""
_LIBC = ctypes.CDLL(None, use_errno=True)
TRIM_INTERVAL = 0.5
"""Seconds between looks at the size of a running operator's log."""
JOIN_CGROUP = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
"""sh script: write its own pid to each ``cgroup.procs`` given before ``--``, then exec the rest."""
SANDBOX_EXEC = "claret-sandbox-exec"
"""The helper (``sandbox_exec.c``) that joins the control groups and, inside, drops to the operator's user
and sets its environment: one static program in place of ``sh``, ``setpriv`` and ``env``."""
SANDBOX_EXEC_INSIDE = "/.claret-sandbox-exec"
"""Where the helper is bound (read-only) in a root service's sandboxes."""


def installed_sandbox_exec() -> Path | None:
    """The helper scripts/install builds beside the interpreter (the venv's bin folder), if it is there."""
    path = Path(sys.executable).parent / SANDBOX_EXEC
    return path if path.is_file() and os.access(path, os.X_OK) else None


INSTALLED_SANDBOX_EXEC = installed_sandbox_exec()


def status_path(spec: OperatorSpec) -> Path:
    """bwrap's status file: bwrap itself writes its child's pid there as it starts, then the exit code, so
    a file with nothing in it means the operator never got going (the service died around the spawn)."""
    return spec.log_path.with_suffix(".status")


def ever_started(spec: OperatorSpec) -> bool:
    try:
        return status_path(spec).stat().st_size > 0
    except FileNotFoundError:
        return False


def limits(spec: OperatorSpec) -> Limits:
    """The requests as limits: always some, whatever the requests say."""
    return Limits(memory_bytes=memory_limit_bytes(spec), cpus=max(spec.cpu, 1), pids=spec.pids_limit)


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


def users(uid: int, gid: int) -> dict[str, str]:
    """The sandbox's /etc/passwd and /etc/group: root, the operator's user and nobody, no one else."""
    return {
        "passwd": (
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"operator:x:{uid}:{gid}:Claret operator:/tmp:/usr/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "group": f"root:x:0:\noperator:x:{gid}:\nnogroup:x:65534:\n",
    }


def sandbox_etc(uid: int, gid: int) -> Path:
    """The sandbox's /etc (one bind mount is cheaper than one per file): copies of the host's entries in
    :data:`HOST_ETC` as they are at the service's start, and :func:`users`. Made again should a cleaner of
    /tmp have removed it."""
    etc = _sandbox_etc(uid, gid)
    if not etc.is_dir():
        _sandbox_etc.cache_clear()
        etc = _sandbox_etc(uid, gid)
    return etc


@functools.cache
def _sandbox_etc(uid: int, gid: int) -> Path:
    top = Path(tempfile.mkdtemp(prefix="claret-sandbox-"))  # 0700: no local user reaches it
    atexit.register(shutil.rmtree, top, ignore_errors=True)
    etc = top / "etc"
    etc.mkdir(mode=0o755)
    for name in HOST_ETC:
        host, copy = Path("/etc", name), etc / name
        copy.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if host.is_dir() and not host.is_symlink():
            shutil.copytree(host, copy, symlinks=True)
        elif host.exists():
            shutil.copyfile(host, copy)
    for name, content in users(uid, gid).items():
        (etc / name).write_text(content)
    for path in (etc, *etc.rglob("*")):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    return etc


class Descriptors:
    """Descriptors handed to bwrap (status file, seccomp filter, generated files); those made here are
    closed after the spawn."""

    def __init__(self) -> None:
        self.fds: list[int] = []
        self._made: list[int] = []

    def keep(self, fd: int) -> str:
        self.fds.append(fd)
        return str(fd)

    def data(self, name: str, content: bytes) -> str:
        """A memory file holding ``content``, read by bwrap from its start."""
        fd = os.memfd_create(name)
        self._made.append(fd)
        os.write(fd, content)
        os.lseek(fd, 0, os.SEEK_SET)
        return self.keep(fd)

    def close(self) -> None:
        for fd in self._made:
            with contextlib.suppress(OSError):
                os.close(fd)


SYSTEM_PATHS = (
    *("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc", "/dev", "/sys"),
    SANDBOX_EXEC_INSIDE,
)
"""No mount may cover these (nor ``/``): the programs run as root before the drop live there."""


def mount_point(mount: Mount) -> str:
    """Where ``mount`` goes, in one spelling: normpath keeps two leading slashes, which the kernel reads as one."""
    return "/" + posixpath.normpath(mount.target).lstrip("/")


def mount_parents(spec: OperatorSpec) -> list[str]:
    """The folders above the mount points (``/clara`` for ``/clara/common``), each once, outermost first."""
    parents: dict[str, None] = {}
    for mount in spec.mounts:
        parts = mount_point(mount).split("/")[1:-1]
        for depth in range(1, len(parts) + 1):
            parents["/" + "/".join(parts[:depth])] = None
    return list(parents)


def check_mounts(spec: OperatorSpec) -> None:
    """Refuse mounts a root bwrap must not make: over the system's folders (an operator's files would
    replace setpriv or its libraries), or inside another mount (a link an upstream operator left there
    would lead bwrap's mkdir, as root, anywhere on the host)."""
    targets = [mount_point(mount) for mount in spec.mounts]
    for target in targets:
        covered = [p for p in SYSTEM_PATHS if target == "/" or target == p or target.startswith(p + "/")]
        if covered:
            raise RuntimeFailure(
                f"operator {spec.operator!r}: the sandbox cannot mount at {target}: it would cover {covered[0]}"
            )
    for target in targets:
        inside = [other for other in targets if other != target and target.startswith(other.rstrip("/") + "/")]
        if inside:
            raise RuntimeFailure(
                f"operator {spec.operator!r}: the sandbox cannot mount {target} inside another mount ({inside[0]})"
            )


def bwrap_arguments(
    spec: OperatorSpec,
    fds: Descriptors,
    status_fd: int,
    drop_to: tuple[int, int] | None,
    devices: Sequence[Path] = (),
    helper: Path | None = None,
) -> list[str]:
    """The bwrap command line for ``spec`` (the new root is an empty tmpfs; we add what it needs). With
    ``drop_to`` (a root service) bwrap is privileged, keeps only CAP_SETUID and CAP_SETGID, and runs the
    static ``helper`` (``claret-sandbox-exec drop``), or without one setpriv and then ``env`` (by their
    absolute paths, in a fixed environment), to switch to that uid and gid; only then does the operator get
    its variables, so none of them (LD_PRELOAD, PATH...) reaches a root process. Without ``drop_to``, bwrap
    runs in a user namespace of the service's own (unprivileged) user. ``devices`` (the granted GPUs'
    nodes and the driver's) are bound into the otherwise minimal /dev."""
    if not spec.command:
        raise RuntimeFailure(
            f"operator {spec.operator!r} has no command: the sandbox runtime does not use "
            f"images, so container.command must say what to run"
        )
    check_mounts(spec)
    # No --die-with-parent: a sandbox must outlive a crash of the service, which re-attaches to it.
    args = ["bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    args += [] if spec.network or spec.joins else ["--unshare-net"]  # joins: nsenter put it in its service's
    if drop_to is None:
        args += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
    else:
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    uid, gid = drop_to or (os.getuid(), os.getgid())
    args += [*host_root(), "--ro-bind", str(sandbox_etc(uid, gid)), "/etc"]
    if drop_to is not None and helper is not None:
        args += ["--ro-bind", str(helper), SANDBOX_EXEC_INSIDE]
    # /proc/sys read-only over the fresh /proc (its sysctls are the kernel's, not the sandbox's)
    args += ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys", "--dev", "/dev"]
    for device in devices:
        args += ["--dev-bind", str(device), f"/dev/{device.name}"]
    args += ["--perms", "1777", "--tmpfs", "/dev/shm"]
    args += ["--perms", "1777", "--tmpfs", "/tmp", "--chdir", "/"]
    for folder in mount_parents(spec):  # bwrap would make them 0700: an operator could not reach its mounts
        args += ["--perms", "0755", "--dir", folder]
    for mount in spec.mounts:
        args += ["--ro-bind" if mount.read_only else "--bind", str(mount.source), mount_point(mount)]  # as checked
    args += ["--seccomp", fds.data("seccomp", seccomp.program()), "--clearenv"]
    # The job and operator names are always there: sandboxes() reads them on the command line, and the
    # platform instance where bwrap's environment is not the operator's (a root service: setpriv's), so
    # that no CLARET_ variable reaches an operator.
    identity = {"NVIDIA_CLARA_JOB_ID": spec.job_id, "NVIDIA_CLARA_STAGE_NAME": spec.operator}
    operator_env = {"PATH": PATH, "HOME": "/tmp", **spec.env, **identity}
    instance = {INSTANCE_VARIABLE: spec.labels[INSTANCE_LABEL]} if INSTANCE_LABEL in spec.labels else {}
    for key, value in ({"PATH": PATH, **identity, **instance} if drop_to else operator_env).items():
        args += ["--setenv", key, value]
    args += ["--json-status-fd", fds.keep(status_fd), "--"]
    if drop_to is None:
        return [*args, *spec.command]
    if "=" in spec.command[0]:  # env would take it for a variable (refused with the helper too: same rules anywhere)
        raise RuntimeFailure(f"operator {spec.operator!r}: a command may not start with a word holding '='")
    variables = [f"{key}={value}" for key, value in operator_env.items()]
    if helper is not None:
        return [*args, SANDBOX_EXEC_INSIDE, "drop", str(uid), str(gid), *variables, "--", *spec.command]
    setpriv = [SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all", "--no-new-privs"]
    # no_new_privs: no exec regains a capability (emptying the bounding set too would cost 1 ms)
    return [*args, *setpriv, "--", ENV, "-i", *variables, *spec.command]


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
    the environment it was told to set, which its command line carries; also while it is still the helper
    (or ``sh``) that joins its control group before it execs bwrap (same pid, bwrap's arguments after
    its own)."""
    wanted = {"NVIDIA_CLARA_JOB_ID": job_id, "NVIDIA_CLARA_STAGE_NAME": operator}
    return next((pid for pid, identity in sandboxes() if wanted.items() <= identity.items()), None)


def sandboxes() -> Iterator[tuple[int, dict[str, str]]]:
    """(pid, identity variables) of every sandbox running on this host (see :func:`find_sandbox`)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            args = Path(f"/proc/{entry.name}/cmdline").read_bytes().decode(errors="replace").split("\0")
            leads = os.getpgid(int(entry.name)) == int(entry.name)
        except OSError:
            continue
        bwrap = next((i for i, arg in enumerate(args) if Path(arg).name == "bwrap"), None)
        if bwrap is None or not leads:
            continue
        args = args[bwrap:]
        values = {args[i + 1]: args[i + 2] for i, arg in enumerate(args[:-2]) if arg == "--setenv"}
        yield int(entry.name), values


def spawn(command: list[str], log_fd: int, fds: Descriptors) -> subprocess.Popen[bytes]:
    """Start the sandbox: a new session (signals reach its group), stdin /dev/null, stdout and stderr to
    the log file, only ``fds`` inherited besides, an environment of PATH alone, and the signal
    dispositions a program expects (Python's ignored SIGPIPE is restored). No Python code runs in the
    child between fork and exec, so forking this multi-threaded process is safe."""
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log_fd,
        stderr=log_fd,
        env={"PATH": PATH},
        close_fds=True,
        pass_fds=fds.fds,
        start_new_session=True,
        restore_signals=True,
    )


def watch_exit(pid: int, reap: Callable[[], int | None] | None) -> asyncio.Future[int | None]:
    """A future for the end of ``pid``, through a pidfd (readable once the process ended: no polling).
    Whatever the sandbox left running is killed with its process group first, while the ended bwrap
    still holds its pid, so the signal cannot reach a newcomer. A child of ours is reaped (``reap``) and
    its exit status given; another process's status is unknowable (None)."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[int | None] = loop.create_future()
    pidfd = os.pidfd_open(pid)

    def on_exit() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # the PID namespace's init: the namespace dies with it
        code = reap() if reap is not None else None
        if not exited.done():
            exited.set_result(code)

    loop.add_reader(pidfd, on_exit)
    return exited


class LogCap:
    """Keeps a log file that the operator appends to directly at most ``limit`` bytes plus the marker."""

    def __init__(self, path: Path, limit: int) -> None:
        self._path = path
        self._marker = truncation_marker(limit)
        self._limit = limit

    def trim(self) -> bool:
        """Cut what is past the cap (the marker once), and free space allocated past the end without
        being written (``fallocate`` with KEEP_SIZE); True when the log was ever cut."""
        try:
            info = self._path.stat()
            allocated_past = info.st_blocks * 512 > max(info.st_size, self._limit) + ALLOCATION_SLACK
            if info.st_size <= self._limit and not allocated_past:
                return False
            with open(self._path, "r+b") as log_file:
                if info.st_size > self._limit:
                    log_file.seek(self._limit)
                    if log_file.read(len(self._marker)) != self._marker:
                        log_file.seek(self._limit)
                        log_file.write(self._marker)
                    log_file.truncate(self._limit + len(self._marker))
                    log_file.flush()
                if allocated_past:  # a truncate to its own size frees the blocks past the end
                    log_file.truncate(log_file.seek(0, os.SEEK_END))
        except OSError:  # the log is gone (its job deleted): nothing to keep small
            return False
        return info.st_size > self._limit


class SandboxHandle:
    """A sandboxed operator: the bwrap process leads its own process group, so signals reach the group."""

    def __init__(
        self,
        pid: int,
        spec: OperatorSpec,
        exited: asyncio.Future[int | None],
        group: OperatorGroup | None,
        start_time: str | None = None,
    ) -> None:
        self.pid = pid
        self._spec = spec
        self._exited = exited
        self._group = group
        self._start_time = start_time or process_start_time(pid) or "0"
        self._log = LogCap(spec.log_path, spec.max_log_bytes)
        self._trimming = asyncio.get_running_loop().create_task(self._trim_while_running())

    @property
    def runtime_id(self) -> str:
        return f"{self.pid}:{self._start_time}"

    @property
    def ended(self) -> bool:
        return self._exited.done()

    async def _trim_while_running(self) -> None:
        # A stat, and rarely a truncate, of a local file: quicker in the loop than a trip to a thread.
        while not self._exited.done():
            await asyncio.wait([self._exited], timeout=TRIM_INTERVAL)
            self._log.trim()

    async def wait(self) -> Exit:
        code = await asyncio.shield(self._exited)
        await asyncio.shield(self._trimming)
        if self._group is not None:
            self._group.kill()  # what the operator left (a child outside its process group, too)
        truncated = self._log.trim()
        recorded = read_exit_code(status_path(self._spec))
        if recorded is None:
            recorded, note = KILLED if code is None else code, "the sandbox ended without reporting an exit code"
        else:
            note = ""
        message = self._limit_hit(recorded) or note
        if self._group is not None:
            _in_background(remove_group(self._group))
        return Exit(recorded, message, log_truncated=truncated)

    def _limit_hit(self, code: int) -> str:
        """Why a failed operator failed, when a limit of its group says so."""
        if code == 0 or self._group is None:
            return ""
        if self._group.oom_killed():
            limit = memory_limit_bytes(self._spec) >> 20
            return f"killed: out of memory (its limit is {limit} MB, from its memory request)"
        if self._group.pids_exhausted():
            return f"it reached its limit of {self._spec.pids_limit} processes and threads"
        return ""

    async def stop(self, grace: float) -> None:
        """SIGTERM to the operator's processes, SIGKILL to the whole sandbox after ``grace`` seconds.

        The outer bwrap process is spared the SIGTERM: it would die at once and take the sandbox's
        PID namespace with it, so the operator would get no grace period at all.
        """
        if self._exited.done():  # gone already; its pid may belong to someone else by now
            return
        members = set(group_members(self.pid)) | (self._group.members() if self._group else set())
        for pid in members - {self.pid}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            await asyncio.shield(self._exited)


def _namespace_holder(ref: str) -> int | None:
    """The process holding a sandboxed service's network namespace (its ``ServiceNetwork.ref``, ``pid:start
    time``), if it still runs."""
    pid_text, _, start_time = ref.partition(":")
    if not pid_text.isdigit() or process_start_time(int(pid_text)) != start_time:
        return None
    return int(pid_text)


class SandboxServiceHandle:
    """A sandboxed service and the network namespace its operators join."""

    def __init__(self, handle: SandboxHandle, network: ServiceNetwork) -> None:
        self._handle = handle
        self._network = network

    @property
    def runtime_id(self) -> str:
        return self._handle.runtime_id

    @property
    def network(self) -> ServiceNetwork:
        return self._network

    async def wait(self) -> Exit:
        return await self._handle.wait()

    async def stop(self, grace: float) -> None:
        await self._handle.stop(grace)


_BACKGROUND: set[asyncio.Task[None]] = set()


def _in_background(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


async def remove_group(group: OperatorGroup, within: float = 30.0) -> None:
    """Kill what is in an operator's control group and remove the group once those processes are gone
    (milliseconds, usually: nobody waits for it), killing again whatever is still there."""
    deadline = time.monotonic() + within
    group.kill()
    while not await asyncio.to_thread(group.remove):  # a memory group's rmdir takes a millisecond or so
        if time.monotonic() > deadline:
            log.warning("cannot remove a control group", folders=[str(f) for f in group.folders.values()])
            return
        group.kill()
        await asyncio.sleep(0.01)


def leave_session_keyring() -> None:
    """Give this thread (the event loop's, which spawns every sandbox) a new, empty session keyring, so
    operators do not inherit the keyring of the session that started the service, with its keys."""
    if _LIBC.syscall(seccomp.syscall_number("keyctl"), KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
        log.warning("cannot leave the service's session keyring", reason=os.strerror(ctypes.get_errno()))


def open_cgroups(instance: str) -> Cgroups | None:
    """The control groups operators get limits from, or None (with a warning saying why)."""
    try:
        cgroups = Cgroups.detect(instance)
    except (CgroupsUnavailable, OSError) as exc:
        log.warning("sandboxed operators run WITHOUT memory, cpu and process limits", reason=str(exc))
        return None
    log.info("sandbox limits from control groups", version=cgroups.version)
    return cgroups


class SandboxRuntime:
    name = "sandbox"

    def __init__(
        self,
        bwrap: str = "bwrap",
        cgroups: Cgroups | None = None,
        devices: Path = Path("/dev"),
        instance: str = "claret",
        helper: Path | None = INSTALLED_SANDBOX_EXEC,
    ) -> None:
        """``devices`` is where GPU device nodes are found (the host's /dev); ``instance`` the platform
        instance whose services this runtime may remove; ``helper`` the ``claret-sandbox-exec`` to run
        (None: ``sh``, ``setpriv`` and ``env``, about 4 ms slower an operator)."""
        path = shutil.which(bwrap)
        if path is None:
            raise RuntimeFailure("the sandbox runtime needs bubblewrap (Debian package 'bubblewrap')")
        self._root = os.geteuid() == 0
        needed = (SETPRIV, ENV) if self._root and helper is None else ()
        if not all(os.access(program, os.X_OK) for program in needed):
            raise RuntimeFailure(f"the sandbox runtime run as root needs {SETPRIV} and {ENV} (util-linux, coreutils)")
        if helper is None:
            through = "sh, setpriv and env" if self._root else "sh"
            log.info("sandboxes start without their helper", through=through, missing=SANDBOX_EXEC)
        try:
            seccomp.program()
        except seccomp.UnsupportedArchitecture as exc:
            raise RuntimeFailure(f"the sandbox runtime cannot filter system calls here: {exc}") from exc
        self._bwrap = path
        self._helper = helper
        self._cgroups = cgroups
        self._devices = devices
        self._instance = instance
        leave_session_keyring()
        if self._root:
            sandbox_etc(*FALLBACK_USER)  # made now rather than at the first operator's start

    def _user(self, spec: OperatorSpec) -> tuple[int, int] | None:
        """Whom a root service drops to (never root); None for a service that is not root."""
        if not self._root:
            return None
        uid, gid = spec.user or FALLBACK_USER
        return (uid, gid) if uid != 0 and gid != 0 else FALLBACK_USER

    def _spawn(self, spec: OperatorSpec, command: list[str]) -> subprocess.Popen[bytes]:
        """bwrap for ``spec`` after ``command`` (bwrap itself, or the wrapper that joins the control group)."""
        fds = Descriptors()
        # Opening two local files is instant; the child needs real descriptors, not async streams.
        with open(spec.log_path, "ab") as log_file, open(status_path(spec), "wb") as status:
            try:
                devices = gpus.device_nodes(spec.gpu_ids, self._devices)
                args = bwrap_arguments(spec, fds, status.fileno(), self._user(spec), devices, self._helper)
                return spawn([*command, *args[1:]], log_file.fileno(), fds)
            except gpus.MissingDevice as exc:
                raise RuntimeFailure(f"operator {spec.operator!r}: {exc}") from exc
            except OSError as exc:
                raise RuntimeFailure(f"cannot start bwrap for operator {spec.operator!r}: {exc}") from exc
            finally:
                fds.close()

    def _group(self, spec: OperatorSpec) -> OperatorGroup | None:
        return None if self._cgroups is None else self._cgroups.group(spec.job_id, spec.operator)

    async def start(self, spec: OperatorSpec) -> Handle:
        return await self._start(spec)

    async def _start(self, spec: OperatorSpec) -> SandboxHandle:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        bwrap = [*self._join(spec), self._bwrap]
        command, group = bwrap, None
        if self._cgroups is not None:
            try:
                group = self._cgroups.create(spec.job_id, spec.operator, limits(spec))
            except OSError as exc:
                raise RuntimeFailure(f"cannot make the control group of operator {spec.operator!r}: {exc}") from exc
            command = [*self._joining(group.procs_files), "--", *bwrap]
        try:
            process = self._spawn(spec, command)
        except BaseException:
            if group is not None:
                group.remove()
            raise
        try:
            exited = watch_exit(process.pid, process.wait)
        except OSError as exc:  # no pidfd (descriptors exhausted): do not leave it running unwatched
            os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)
            if group is not None:
                _in_background(remove_group(group))
            raise RuntimeFailure(f"cannot watch the sandbox of operator {spec.operator!r}: {exc}") from exc
        log.debug("sandbox started", job_id=spec.job_id, operator=spec.operator, pid=process.pid)
        return SandboxHandle(process.pid, spec, exited, group)

    def _joining(self, procs_files: Sequence[Path]) -> list[str]:
        """What writes its pid to each of ``procs_files`` before it execs what follows its ``--``."""
        files = [str(path) for path in procs_files]
        if self._helper is None:
            return ["/bin/sh", "-c", JOIN_CGROUP, "claret-join", *files]
        return [str(self._helper), "join", *files]

    def _join(self, spec: OperatorSpec) -> list[str]:
        """What puts an operator that uses a service into the service's network namespace (nothing for one
        that uses none)."""
        service = joined_network(spec)
        if service is None:
            return []
        pid = _namespace_holder(service)
        if pid is None:
            raise RuntimeFailure(f"operator {spec.operator!r}: its service is gone")
        return [netns.NSENTER, f"--net={netns.namespace_path(pid)}"]

    async def start_service(self, spec: OperatorSpec) -> SandboxServiceHandle:
        """The service in a sandbox of its own, with a network namespace of its own (bwrap's
        ``--unshare-net``: a loopback and nothing else) that its operators join."""
        if not self._root:
            raise RuntimeFailure(
                "pipeline services need the sandbox runtime to run as root (operators join the service's "
                "network namespace); run the jobs service as root, or use the docker runtime"
            )
        handle = await self._start(spec)
        try:
            holder = await self._namespace_holder(spec, handle)
        except BaseException:
            await handle.stop(0)
            await handle.wait()
            raise
        network = ServiceNetwork(f"{holder}:{process_start_time(holder)}", netns.LOOPBACK)
        return SandboxServiceHandle(handle, network)

    async def _namespace_holder(self, spec: OperatorSpec, handle: SandboxHandle, within: float = 10.0) -> int:
        """bwrap writes its child's pid as soon as it has made the namespaces: milliseconds."""
        deadline = time.monotonic() + within
        while (holder := netns.namespace_holder(status_path(spec))) is None:
            if handle.ended or time.monotonic() > deadline:
                raise RuntimeFailure(f"service {spec.operator!r}: its sandbox ended before it started")
            await asyncio.sleep(0.005)
        return holder

    async def attach_service(
        self, spec: OperatorSpec, runtime_id: str, network: ServiceNetwork
    ) -> SandboxServiceHandle | None:
        handle = await self.attach(spec, runtime_id)
        if not isinstance(handle, SandboxHandle):
            return None
        if handle.ended:  # it ended while the jobs service was down: what is left of it goes
            await handle.wait()
            return None
        return SandboxServiceHandle(handle, network)

    async def stop_service(self, spec: OperatorSpec, runtime_id: str, grace: float) -> None:
        handle = await self.attach(spec, runtime_id)
        if handle is not None:
            await handle.stop(grace)

    async def accepts(self, network: ServiceNetwork, port: int) -> bool:
        pid = _namespace_holder(network.ref)
        return pid is not None and await netns.accepts(pid, port)

    async def request(self, network: ServiceNetwork, port: int, method: str, path: str) -> tuple[int, bytes]:
        pid = _namespace_holder(network.ref)
        if pid is None:
            raise ConnectionRefusedError(f"the service's network ({network.ref}) is gone")
        return await netns.request(pid, port, method, path)

    async def remove_orphan_services(self, known: Callable[[], Awaitable[set[str]]]) -> list[str]:
        """Kill the sandboxes of services not among ``known()`` (with their process and control groups)."""
        removed = []
        ours = {"NVIDIA_CLARA_JOB_ID": SERVICES_JOB, INSTANCE_VARIABLE: self._instance}.items()
        found = await asyncio.to_thread(lambda: [(pid, named) for pid, named in sandboxes() if ours <= named.items()])
        recorded = await known()
        for pid, named in found:
            name = named["NVIDIA_CLARA_STAGE_NAME"]
            if name not in recorded:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                    removed.append(name)
                if self._cgroups is not None:
                    _in_background(remove_group(self._cgroups.group(SERVICES_JOB, name)))
        return removed

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
            if read_exit_code(status_path(spec)) is None:  # lost: what its group still holds goes
                if (group := self._group(spec)) is not None:
                    _in_background(remove_group(group))
                return None
            exited = asyncio.get_running_loop().create_future()
            exited.set_result(None)
            return SandboxHandle(pid, spec, exited, self._group(spec), start_time)
        try:
            return SandboxHandle(pid, spec, watch_exit(pid, None), self._group(spec), start_time)
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
