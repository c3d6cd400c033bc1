"""A real Docker Swarm of one manager and a few workers on one machine, for tests.

The main Docker engine (the default socket) is the manager, so that images built on it are there for stacks.
Each worker is a second ``dockerd`` started with ``nsenter`` in a network namespace of its own (``ip netns exec``
would remount /sys and hide the devices cgroup), with a hostname of its own (``unshare --uts``), fake GPUs as
node generic resources, its own containerd (started and waited for here, see ``_spawn``) and its own
``--cgroup-parent``. The namespaces hang on one host bridge, 10.213.0.0/24: the manager advertises 10.213.0.1
(the bridge), worker N is 10.213.0.(N+1), so nodes reach each other as hosts on one LAN would. All engines
share the filesystem: a bind mount works with the same path on every node. Nothing in the namespaces routes
beyond the bridge, so a worker's try at a registry fails at once instead of waiting for a DNS timeout; workers
run with ``DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1`` (without it each task first tries to pull, about 20 s) and
get their images by ``docker save | docker load``.

Networking of tasks: workers run with ``--bridge=none``, so a task without ``--network`` has only loopback
there (on the manager it gets docker0). Overlay networks work between all nodes, workers included (an iptables
rule lets bridged traffic between the namespaces pass Docker's FORWARD DROP policy). This kernel has no IPVS:
a service's virtual IP does not route; use ``--endpoint-mode dnsrr`` (``endpoint_mode: dnsrr`` in a stack)
or ``tasks.<service>``.

The swarm's dispatcher heartbeat is 1 s, not the default 5 s: the manager marks a node Down about three
heartbeats after its last, so a killed worker shows Down after 1.5 to 3.5 s instead of about 14 s (measured).

Measured on a 2-core machine: setup 1.3 to 3 s (workers start in parallel), teardown 2 to 3 s; a restarted
worker is Ready again within 0.5 s.

One cluster at a time per machine: a lock (``/tmp/claret-swarm-lock``, left in place, as flock files are)
serializes clusters, and whoever holds it first scrubs what a killed earlier run left (a swarm on the main
engine, ``claret-swarm-*`` processes, mounts, cgroups, links, namespaces and directories). Teardown runs the
same scrub, so it cleans after a failed setup too.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

PREFIX = "claret-swarm-"
"""Names of everything a cluster makes on the host: directories, network namespaces, cgroups."""
TMP = Path("/tmp")
"""Where clusters keep their engines: a short path, as unix socket paths have at most 108 bytes."""

BRIDGE = "claret-swarm0"
SUBNET = "10.213.0"
MANAGER_ADDRESS = f"{SUBNET}.1"
HEARTBEAT = "1s"
TOOLS = ("docker", "dockerd", "ip", "nsenter", "unshare", "hostname", "iptables")
FORWARD_RULE = ("FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT")
"""Docker sets the FORWARD policy to DROP and bridged frames pass iptables: this lets workers talk directly."""


class SwarmUnavailable(Exception):
    """This machine cannot host a cluster (not root, or a tool is missing)."""


@dataclass(frozen=True)
class Node:
    """One node of the swarm, as tests address it."""

    name: str
    """Its hostname, as ``docker node ls`` and ``node.hostname`` constraints see it."""
    engine: str | None
    """``unix://...`` socket of its Docker engine, or None for the main engine (the CLI's default)."""
    node_id: str
    address: str
    gpus: tuple[str, ...] = ()
    """The ids it declares as ``gpu`` generic resources; a task gets its grant in DOCKER_RESOURCE_GPU."""


@dataclass
class _Worker:
    """What it takes to run, kill and restart one worker engine."""

    index: int
    home: Path
    gpus: tuple[str, ...]
    process: subprocess.Popen[bytes] | None = None
    """Its dockerd."""
    containerd: subprocess.Popen[bytes] | None = None

    @property
    def hostname(self) -> str:
        return f"claret-w{self.index}"

    @property
    def netns(self) -> str:
        return f"{PREFIX}w{self.index}"

    @property
    def link(self) -> str:
        return f"claret-sw{self.index}"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{self.index + 1}"

    @property
    def engine(self) -> str:
        return f"unix://{self.home}/s"

    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [process for process in (self.containerd, self.process) if process is not None]

    def running(self) -> bool:
        return any(process.poll() is None for process in self.processes())

    def wait(self) -> None:
        for process in self.processes():
            process.wait()

    @property
    def containerd_socket(self) -> Path:
        return self.home / "c.sock"

    def containerd_config(self) -> str:
        """The worker's containerd: its own root, state and socket, no CRI (as dockerd would configure it)."""
        return (
            f'version = 2\nroot = "{self.home}/c/root"\nstate = "{self.home}/c/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\naddress = "{self.containerd_socket}"\n'
        )

    def containerd_command(self) -> list[str]:
        return self._in_namespaces(["containerd", f"--config={self.home}/containerd.toml"])

    def command(self) -> list[str]:
        """dockerd in the worker's namespace, under its own hostname, with its own everything."""
        return self._in_namespaces(
            [
                "dockerd",
                f"--config-file={self.home}/daemon.json",
                f"--containerd={self.containerd_socket}",
                f"--data-root={self.home}/d",
                f"--exec-root={self.home}/e",
                f"--pidfile={self.home}/pid",
                f"--host={self.engine}",
                "--iptables=false",
                "--bridge=none",
                f"--cgroup-parent={self.netns}",
                *(f"--node-generic-resource=gpu={gpu}" for gpu in self.gpus),
            ]
        )

    def _in_namespaces(self, command: list[str]) -> list[str]:
        """``command`` in the worker's network namespace, under its own hostname."""
        script = 'hostname "$1" && shift && exec "$@"'
        namespaces = ["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--uts"]
        return [*namespaces, "sh", "-c", script, "sh", self.hostname, *command]


def unsupported() -> str | None:
    """Why this machine cannot host a cluster, or None when it can."""
    if os.geteuid() != 0:
        return "a swarm of engines in network namespaces needs root"
    lacking = [tool for tool in TOOLS if shutil.which(tool) is None]
    if lacking:
        return f"a swarm of engines in network namespaces needs {', '.join(lacking)} (iproute2, util-linux)"
    return None


def run(*command: str, timeout: float = 60, check: bool = True, stdin: IO[bytes] | None = None) -> str:
    """Run a command; its stdout, or an AssertionError naming the command and what it printed."""
    result = subprocess.run(command, capture_output=True, stdin=stdin, timeout=timeout)
    out, err = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{out}\n{err}")
    return out


class SwarmCluster:
    """The main engine as manager and ``workers`` engines in namespaces. Use it as a context manager."""

    def __init__(self, workers: int = 2, gpus_per_worker: int = 2, images: Sequence[str] = ("busybox:latest",)) -> None:
        if not 1 <= workers <= 200:
            raise ValueError("a cluster has 1 to 200 workers")
        self._images = tuple(images)
        self._root = Path()
        self._lock: IO[bytes] | None = None
        self._specs = [
            _Worker(index, Path(), tuple(f"GPU-w{index}{chr(ord('a') + n)}" for n in range(gpus_per_worker)))
            for index in range(1, workers + 1)
        ]
        self.manager = Node(socket.gethostname(), None, "", MANAGER_ADDRESS)
        self.workers: tuple[Node, ...] = ()

    def __enter__(self) -> SwarmCluster:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def nodes(self) -> tuple[Node, ...]:
        return (self.manager, *self.workers)

    # -- setup ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Bring the cluster up; on any failure, tear down what was made and re-raise."""
        reason = unsupported()
        if reason:
            raise SwarmUnavailable(reason)
        self._lock = _acquire_lock()
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        _leave_main_swarm()
        _scrub()
        self._root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=TMP))  # short: unix socket paths <= 108 bytes
        _make_bridge()
        for worker in self._specs:
            worker.home = self._root / f"w{worker.index}"
            worker.home.mkdir()
            (worker.home / "daemon.json").write_text("{}")  # not the host's /etc/docker/daemon.json
            (worker.home / "containerd.toml").write_text(worker.containerd_config())
            _make_namespace(worker)
        for worker in self._specs:
            self._spawn(worker)
        archive = self._root / "images.tar"
        with ThreadPoolExecutor(len(self._specs) + 2) as pool:
            init = pool.submit(self._init_manager)
            saved = pool.submit(run, "docker", "save", "-o", str(archive), *self._images, timeout=300)
            for worker in self._specs:
                _wait_engine(worker)
            token = init.result()
            saved.result()
            nodes = list(pool.map(lambda worker: self._join(worker, token, archive), self._specs))
        self.workers = tuple(nodes)
        self.wait_ready()

    def _init_manager(self) -> str:
        """``swarm init`` on the main engine; the workers' join token."""
        address = ("--advertise-addr", MANAGER_ADDRESS, "--listen-addr", f"{MANAGER_ADDRESS}:2377")
        run("docker", "swarm", "init", *address, "--dispatcher-heartbeat", HEARTBEAT)
        node_id = run("docker", "info", "--format", "{{.Swarm.NodeID}}").strip()
        self.manager = Node(self.manager.name, None, node_id, MANAGER_ADDRESS)
        return run("docker", "swarm", "join-token", "--quiet", "worker").strip()

    def _spawn(self, worker: _Worker) -> None:
        """Start the worker's containerd, wait until it serves, then start its dockerd on it.

        Not dockerd's own containerd: dockerd gives one it starts 15 s to serve, and a containerd restarted
        after a kill first cleans up every dead task's shim (CI saw that take longer on a busy machine)."""
        env = {**os.environ, "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}  # run local images, never pull
        env.pop("DOCKER_HOST", None)
        worker.containerd = _start_logged(worker.containerd_command(), worker.home / "containerd.log", env)
        _wait_containerd(worker)
        worker.process = _start_logged(worker.command(), worker.home / "dockerd.log", env)

    def _join(self, worker: _Worker, token: str, archive: Path) -> Node:
        joining = ("--token", token, "--advertise-addr", worker.address, f"{MANAGER_ADDRESS}:2377")
        run("docker", "-H", worker.engine, "swarm", "join", *joining)
        with open(archive, "rb") as images:
            run("docker", "-H", worker.engine, "load", stdin=images, timeout=300)
        node_id = run("docker", "-H", worker.engine, "info", "--format", "{{.Swarm.NodeID}}").strip()
        return Node(worker.hostname, worker.engine, node_id, worker.address, worker.gpus)

    # -- use -----------------------------------------------------------------------------------------------

    def docker(self, node: Node, *args: str, timeout: float = 60) -> str:
        """The docker CLI against ``node``'s engine: its stdout; an AssertionError when it fails."""
        return run("docker", *(("-H", node.engine) if node.engine else ()), *args, timeout=timeout)

    def load_image(self, image: str, nodes: Iterable[Node] | None = None) -> None:
        """Copy an image of the main engine to workers (all by default): they never pull."""
        archive = self._root / "image.tar"
        run("docker", "save", "-o", str(archive), image, timeout=300)
        try:
            for node in self.workers if nodes is None else nodes:
                if node.engine:
                    with open(archive, "rb") as images:
                        run("docker", "-H", node.engine, "load", stdin=images, timeout=300)
        finally:
            archive.unlink()

    def drain(self, worker: Node) -> None:
        """Through the manager: no new tasks on ``worker``, its running ones move elsewhere."""
        self.docker(self.manager, "node", "update", "--availability", "drain", worker.node_id)

    def activate(self, worker: Node) -> None:
        self.docker(self.manager, "node", "update", "--availability", "active", worker.node_id)

    def kill_engine(self, worker: Node) -> None:
        """SIGKILL the worker's dockerd, its containerd, shims and containers at once: a host losing power."""
        spec = self._spec(worker)
        _kill_tree(_pids_of(spec))
        spec.wait()

    def restart_engine(self, worker: Node) -> None:
        """Start a killed worker's dockerd again on its own state: it rejoins the swarm as the same node.

        Wait for the manager to see it Ready with ``wait_ready``."""
        spec = self._spec(worker)
        if spec.running():
            raise AssertionError(f"{worker.name}'s engine still runs")
        self._spawn(spec)
        _wait_engine(spec)

    def states(self) -> dict[str, tuple[str, str]]:
        """What the manager sees now: node id -> (status, availability), as ``docker node ls`` prints them."""
        listing = self.docker(self.manager, "node", "ls", "--format", "{{.ID}} {{.Status}} {{.Availability}}")
        rows = (line.split() for line in listing.splitlines())
        return {node_id: (status, availability) for node_id, status, availability in rows}

    def wait_for(
        self, nodes: Iterable[Node], *, status: str | None = None, availability: str | None = None, timeout: float = 30
    ) -> float:
        """Poll ``docker node ls`` until each of ``nodes`` has this status (Ready, Down) and availability
        (Active, Drain, Pause); the seconds it took."""
        wanted = {node.node_id: node.name for node in nodes}
        start = time.monotonic()
        while True:
            seen = self.states()
            if all(_matches(seen.get(node_id), status, availability) for node_id in wanted):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                got = {name: seen.get(node_id) for node_id, name in wanted.items()}
                raise AssertionError(f"after {timeout:.0f} s, wanted {status or '*'}/{availability or '*'}, saw {got}")
            time.sleep(0.1)

    def wait_ready(self, *nodes: Node, timeout: float = 30) -> float:
        """Until ``nodes`` (every node by default) are Ready and Active; the seconds it took."""
        return self.wait_for(nodes or self.nodes, status="Ready", availability="Active", timeout=timeout)

    def wait_down(self, *nodes: Node, timeout: float = 30) -> float:
        """Until the manager sees ``nodes`` Down; the seconds it took."""
        return self.wait_for(nodes, status="Down", timeout=timeout)

    def _spec(self, worker: Node) -> _Worker:
        for spec in self._specs:
            if spec.engine == worker.engine:
                return spec
        raise ValueError(f"{worker.name} is not a worker of this cluster")

    # -- teardown ------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Remove services, leave the swarm everywhere, then kill and delete everything the cluster made."""
        if self._lock is None:
            return
        problems: list[str] = []
        steps: list[Callable[[], None]] = [self._remove_services, self._workers_leave, _leave_main_swarm]
        for step in [*steps, self._stop_workers, _scrub]:
            try:
                step()
            except Exception as error:  # every step runs: a failed one must not leave the rest behind
                problems.append(f"{getattr(step, '__name__', step)}: {error}")
        self.workers = ()
        self._lock.close()
        self._lock = None
        if problems:
            raise AssertionError("swarm teardown: " + "\n".join(problems))

    def _remove_services(self) -> None:
        if not self.manager.node_id:
            return
        services = self.docker(self.manager, "service", "ls", "--quiet").split()
        if services:
            self.docker(self.manager, "service", "rm", *services)

    def _workers_leave(self) -> None:
        live = [spec.engine for spec in self._specs if spec.process is not None and spec.process.poll() is None]
        with ThreadPoolExecutor(max(len(live), 1)) as pool:
            list(pool.map(lambda engine: run("docker", "-H", engine, "swarm", "leave", check=False, timeout=20), live))

    def _stop_workers(self) -> None:
        for spec in self._specs:
            _kill_tree(_pids_of(spec))
            spec.wait()


@contextmanager
def swarm_cluster(
    workers: int = 2, gpus_per_worker: int = 2, images: Sequence[str] = ("busybox:latest",)
) -> Iterator[SwarmCluster]:
    """A running cluster for the ``with`` block, torn down after it whatever happened."""
    with SwarmCluster(workers, gpus_per_worker, images) as cluster:
        yield cluster


def _matches(seen: tuple[str, str] | None, status: str | None, availability: str | None) -> bool:
    return seen is not None and status in (None, seen[0]) and availability in (None, seen[1])


def _acquire_lock(timeout: float = 900) -> IO[bytes]:
    """The machine-wide lock: one cluster at a time, and whoever holds it owns every ``claret-swarm-*`` thing."""
    lock = open(TMP / f"{PREFIX}lock", "ab")  # noqa: SIM115 (held for the cluster's life)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                raise AssertionError(f"another swarm cluster held {lock.name} for {timeout:.0f} s") from None
            time.sleep(1)


def _leave_main_swarm() -> None:
    """The main engine leaves its swarm (ours, or one a killed earlier run left) and drops the docker_gwbridge
    network that swarm made, which serves nothing outside a swarm."""
    if run("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").strip() != "inactive":
        run("docker", "swarm", "leave", "--force")
    if "docker_gwbridge" in run("docker", "network", "ls", "--format", "{{.Name}}").split():
        run("docker", "network", "rm", "docker_gwbridge", check=False)  # in use: someone's container; keep it


def _make_bridge() -> None:
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "add", f"{MANAGER_ADDRESS}/24", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    run("iptables", "-I", *FORWARD_RULE)


def _make_namespace(worker: _Worker) -> None:
    """The worker's namespace: ``eth0`` on the bridge with its address, loopback up, no route beyond."""
    netns = worker.netns
    run("ip", "netns", "add", netns)
    run("ip", "link", "add", worker.link, "master", BRIDGE, "type", "veth", "peer", "name", "eth0", "netns", netns)
    run("ip", "link", "set", worker.link, "up")
    run("ip", "-n", netns, "addr", "add", f"{worker.address}/24", "dev", "eth0")
    run("ip", "-n", netns, "link", "set", "eth0", "up")
    run("ip", "-n", netns, "link", "set", "lo", "up")


def _engine_answers(worker: _Worker) -> bool:
    """Whether the worker's engine answers now; one still starting may take its socket's connection and stall
    (CI saw a probe hang 10 s after a restart): that is no answer yet, not a failure."""
    probe = ["docker", "-H", worker.engine, "version", "--format", "{{.Server.Version}}"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _serves(path: Path) -> bool:
    """Whether a server accepts connections on the unix socket ``path``; containerd listens only once its
    plugins are loaded (before that the socket is missing or a dead one's, refusing)."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _wait_containerd(worker: _Worker) -> None:
    assert worker.containerd is not None
    log, socket_path = worker.home / "containerd.log", worker.containerd_socket
    _wait_until_answering(f"{worker.hostname}'s containerd", worker.containerd, log, lambda: _serves(socket_path))


def _wait_engine(worker: _Worker, timeout: float = 60) -> None:
    """Until the worker's dockerd answers."""
    assert worker.process is not None
    log = worker.home / "dockerd.log"
    _wait_until_answering(f"{worker.hostname}'s dockerd", worker.process, log, lambda: _engine_answers(worker), timeout)


def _wait_until_answering(
    what: str, process: subprocess.Popen[bytes], log: Path, answers: Callable[[], bool], timeout: float = 60
) -> None:
    """Until ``answers()``; the log's tail, without gRPC's connection chatter, in the AssertionError when the
    process exits or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while not answers():
        if process.poll() is not None or time.monotonic() > deadline:
            lines = [line for line in log.read_text(errors="replace").splitlines() if "module=grpc" not in line]
            raise AssertionError(f"{what} did not answer:\n" + "\n".join(lines[-30:]))
        time.sleep(0.05)


def _start_logged(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``command`` in a session of its own, its output appended to ``log``."""
    with open(log, "ab") as output:
        return subprocess.Popen(
            command, stdout=output, stderr=output, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )


# -- processes -------------------------------------------------------------------------------------------------


def _pids_of(worker: _Worker) -> set[int]:
    started = {process.pid for process in worker.processes() if process.poll() is None}
    return _processes_mentioning(f"{worker.home}/") | started


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process now."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parent = int(stat[stat.rindex(")") + 2 :].split()[1])
                table[int(entry.name)] = (parent, (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return table


def _processes_mentioning(text: str) -> set[int]:
    """Processes whose command line names ``text``, never this one or its ancestors."""
    table = _process_table()
    mine, pid = set(), os.getpid()
    while pid > 1 and pid in table:
        mine.add(pid)
        pid = table[pid][0]
    return {pid for pid, (_, command) in table.items() if text in command} - mine


def _descendants(roots: set[int]) -> set[int]:
    table, found = _process_table(), set(roots)
    grew = True
    while grew:
        more = {pid for pid, (parent, _) in table.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def _kill_tree(roots: set[int]) -> None:
    """Stop the processes and all their descendants (so none forks or reaps meanwhile), SIGKILL them, wait
    until they are gone, then delete the containerd shim sockets they left in /run/containerd."""
    stopped: set[int] = set()
    while pending := _descendants(roots | stopped) - stopped:
        _signal(pending, signal.SIGSTOP)
        stopped |= pending
    sockets = {path for pid in stopped for path in _unix_sockets(pid) if path.startswith("/run/containerd/")}
    _signal(stopped, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while alive := {pid for pid in stopped if _alive(pid)}:
        if time.monotonic() > deadline:
            raise AssertionError(f"processes {sorted(alive)} outlived SIGKILL")
        time.sleep(0.02)
    for path in sockets:
        with suppress(FileNotFoundError):
            os.unlink(path)


def _signal(pids: Iterable[int], number: signal.Signals) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, number)


def _alive(pid: int) -> bool:
    """Running or stopped; a zombie is dead already."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _unix_sockets(pid: int) -> set[str]:
    """Paths of the unix sockets that ``pid`` holds open."""
    inodes = set()
    with suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    paths = set()
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 8 and fields[6] in inodes:
                paths.add(fields[7])
    return paths


# -- scrubbing: what any run (this one, a failed one, a killed one) left ---------------------------------------


def _scrub() -> None:
    """Delete every ``claret-swarm-*`` process, mount, cgroup, link, namespace and directory; only the holder
    of the lock may call this."""
    roots = sorted(TMP.glob(f"{PREFIX}*/"))
    _kill_tree(set().union(*(_processes_mentioning(f"{root}/") for root in roots)))
    for root in roots:
        _unmount_under(root)
    _remove_cgroups()
    _remove_links()
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)
    left = [str(root) for root in roots if root.exists()]
    if left:
        raise AssertionError(f"could not remove {left}")


def _unmount_under(root: Path) -> None:
    """Lazily unmount what the engines left mounted under ``root`` (overlays, namespaces, the data root)."""
    for _ in range(5):
        points = _mounts_under(root)
        if not points:
            return
        for point in sorted(points, key=lambda point: point.count("/"), reverse=True):
            run("umount", "--lazy", point, check=False)
    raise AssertionError(f"still mounted: {_mounts_under(root)}")


def _mounts_under(root: Path) -> list[str]:
    prefix = f"{root}/"
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].encode().decode("unicode_escape")  # octal escapes: \040 is a space
        if point == str(root) or point.startswith(prefix):
            points.append(point)
    return points


def _remove_cgroups() -> None:
    """The workers' ``--cgroup-parent`` trees: their containers' cgroups stay when the engine is killed."""
    cgroups = Path("/sys/fs/cgroup")
    for hierarchy in [*cgroups.glob(f"{PREFIX}w*/"), *cgroups.glob(f"*/{PREFIX}w*/")]:  # v2, v1
        for directory, _, _ in sorted(os.walk(hierarchy), key=lambda entry: len(entry[0]), reverse=True):
            try:
                os.rmdir(directory)
            except OSError as error:
                if error.errno != errno.ENOENT:
                    raise AssertionError(f"cannot remove cgroup {directory}: {error}") from error


def _remove_links() -> None:
    """Namespaces, their veths and the bridge; the iptables rule that let workers talk."""
    for name in run("ip", "netns", "list").split():
        if name.startswith(PREFIX):
            run("ip", "netns", "del", name, check=False)
    for line in run("ip", "-o", "link", "show").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith("claret-sw"):
            run("ip", "link", "del", name, check=False)
    while subprocess.run(["iptables", "-C", *FORWARD_RULE], capture_output=True).returncode == 0:
        run("iptables", "-D", *FORWARD_RULE)
