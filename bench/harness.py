"""What every benchmark shares: servers in subprocesses on free loopback ports, timing helpers, the summary line.

Each benchmark starts its own ``claret serve`` (sandbox runtime, temporary data dir, no GPUs) and, as its
baseline, a bare grpc.aio server (``bench/bare_server.py``) or a bare process spawn, in the same run, and
interleaves baseline and subject rounds so the noise of a shared machine hits both alike.

Set ``BENCH_PYSPY=<dir>`` to record a py-spy profile (collapsed stacks, ``<dir>/<bench>-claret.txt``) of the
Claret server (and of the bare server: ``<bench>-bare.txt``) while a benchmark runs: each line is
``frame;frame;... count``; ``bench/profile_summary.py FILE`` sums them per frame. ``BENCH_PYSPY_NATIVE=1`` adds
the C frames (grpc's core, protobuf, SQLite), which a plain profile counts as their Python caller's own time.

Set ``BENCH_SERVER_ROOT=<dir>`` to serve Claret from another checkout (say, a copy with a proposed fix applied)
while the benchmark, its client and its baselines stay these.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# This process forks (the bare baselines spawn bwrap) while gRPC threads run. gRPC's fork handlers (on by
# default) then run in the child, which can crash it (SIGSEGV in cygrpc's event_engine thread before exec),
# and log an INFO line per fork: turn them off here. Only here: the servers get the environment as it was.
_OWN_ENV = {
    name: value
    for name, value in (("GRPC_ENABLE_FORK_SUPPORT", "0"), ("GRPC_VERBOSITY", "ERROR"))
    if name not in os.environ
}
os.environ.update(_OWN_ENV)

import grpc  # noqa: E402

from protos.nvidia.clara.platform import common_pb2  # noqa: E402

PYTHON = sys.executable
GRPC_OPTIONS = [("grpc.max_receive_message_length", 8 * 1024 * 1024), ("grpc.max_send_message_length", 8 * 1024 * 1024)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"server exited with {process.returncode} before listening\n{tail}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Served:
    """A server subprocess and where it listens."""

    address: str
    pid: int
    workdir: Path

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.address, options=GRPC_OPTIONS)


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary directory, removed at the end (files written by sandboxes included) unless BENCH_KEEP is set."""
    path = Path(tempfile.mkdtemp(prefix=f"claret-bench-{prefix}-"))
    try:
        yield path
    finally:
        if os.environ.get("BENCH_KEEP"):
            print(f"  kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def claret_server(
    workdir: Path,
    *,
    runtime: str = "sandbox",
    env: dict[str, str] | None = None,
    profile_name: str | None = None,
    name: str = "claret",
) -> Iterator[Served]:
    """``python -m claret serve`` with a temporary data dir on a free port; its log goes to ``workdir/<name>.log``.
    Several servers may share one ``workdir`` (and so one data dir) under different names."""
    port = free_port()
    log = workdir / f"{name}.log"
    environ = {k: v for k, v in os.environ.items() if k not in _OWN_ENV and not k.startswith("CLARET_")}
    # 64 declared cores: every operator asks for at least one, and the throughput baselines run 8 at once.
    environ.update({"CLARET_GPUS": "", "CLARET_CPUS": "64", "CLARET_CONSOLE_PORT": "0", **(env or {})})
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "claret",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(workdir / "data"),
                "--runtime",
                runtime,
            ],
            env=environ,
            cwd=os.environ.get("BENCH_SERVER_ROOT") or ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    spy: subprocess.Popen[bytes] | None = None
    try:
        wait_for_port(port, process, log)
        spy = start_profiler(process.pid, profile_name and f"{profile_name}-claret")
        yield Served(f"127.0.0.1:{port}", process.pid, workdir)
    finally:
        if spy is not None:
            stop_profiler(spy)
        stop_process(process)


@contextlib.contextmanager
def bare_server(
    workdir: Path,
    *,
    status_reply: Path | None = None,
    list_replies: Path | None = None,
    profile_name: str | None = None,
) -> Iterator[Served]:
    """``bench/bare_server.py``: the same RPC names and messages as Claret over a bare grpc.aio server."""
    port = free_port()
    log = workdir / "bare.log"
    args = [PYTHON, str(ROOT / "bench" / "bare_server.py"), "--port", str(port), "--root", str(workdir)]
    if status_reply is not None:
        args += ["--status-reply", str(status_reply)]
    if list_replies is not None:
        args += ["--list-replies", str(list_replies)]
    with open(log, "wb") as log_file:
        environ = {k: v for k, v in os.environ.items() if k not in _OWN_ENV}
        process = subprocess.Popen(args, cwd=ROOT, env=environ, stdout=log_file, stderr=subprocess.STDOUT)
    spy: subprocess.Popen[bytes] | None = None
    try:
        wait_for_port(port, process, log)
        spy = start_profiler(process.pid, profile_name and f"{profile_name}-bare")
        yield Served(f"127.0.0.1:{port}", process.pid, workdir)
    finally:
        if spy is not None:
            stop_profiler(spy)
        stop_process(process)


def start_profiler(pid: int, name: str | None) -> subprocess.Popen[bytes] | None:
    folder = os.environ.get("BENCH_PYSPY")
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    if not folder or name is None or not Path(spy).exists():
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    out = Path(folder) / f"{name}.txt"
    process = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "--output", str(out)]
        + (["--native"] if os.environ.get("BENCH_PYSPY_NATIVE") else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # let it attach
    return process


def stop_profiler(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def request_header() -> common_pb2.RequestHeader:
    """What the official client (nvidia-clara-client 0.8.1.7) puts in every request."""
    return common_pb2.RequestHeader(
        api_version=common_pb2.Version(major=0, minor=7, patch=4), user_agent="Nvidia.Clara.Platform"
    )


def run(main: Callable[[], object]) -> None:
    """Run an async main on uvloop (as the server does), so the client is no slower than it needs to be."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(main())  # type: ignore[arg-type]
    else:
        uvloop.run(main())  # type: ignore[arg-type]


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by process ``pid`` (all its threads).

    On a shared, noisy machine a server's CPU time per unit of work varies far less than its wall-clock
    throughput, so the benchmarks print it beside their figures as a steadier second opinion.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def print_series(series: dict[str, list[float]]) -> None:
    """Median, 10th and 90th percentile of each named series of milliseconds, one line each."""
    width = max(map(len, series))
    for who, values in series.items():
        print(
            f"  {who:>{width}}: median {median(values):6.1f} ms  p10 {percentile(values, 0.1):6.1f}  "
            f"p90 {percentile(values, 0.9):6.1f}"
        )


def show_rounds(
    rates: dict[str, list[float]], unit: str, cpu: dict[str, list[float]] | None = None, cpu_unit: str = ""
) -> None:
    """Print each subject's rounds, median and best (and the server CPU time per unit of work, if measured)."""
    for who, values in rates.items():
        rounds = " ".join(f"{v:7.1f}" for v in values)
        line = f"  {who:>6}: {rounds} {unit}  (median {median(values):.1f}, best {max(values):.1f})"
        if cpu is not None:
            line += f"; server CPU {cpu_unit}: median {median(cpu[who]):.2f}, best {min(cpu[who]):.2f}"
        print(line)


@dataclass
class Result:
    """One benchmark's outcome, as bench/run tabulates it."""

    name: str
    figure: float
    baseline: float
    unit: str
    ratio: float
    target: str
    met: bool | None
    """None: no target applies (informational, or skipped)."""
    note: str = ""

    def summary(self) -> str:
        met = "n/a" if self.met is None else ("met" if self.met else "MISSED")
        extra = f"; {self.note}" if self.note else ""
        return (
            f"{self.name}: {self.figure:.4g} {self.unit} ({self.baseline:.4g} {self.unit} baseline) "
            f"ratio {self.ratio:.3f} (target {self.target}: {met}{extra})"
        )


def report(result: Result) -> None:
    """Print the summary line; with ``--json-out PATH`` (bench/run), also write the result as JSON."""
    print(result.summary(), flush=True)
    if "--json-out" in sys.argv:
        path = Path(sys.argv[sys.argv.index("--json-out") + 1])
        path.write_text(json.dumps(asdict(result)))


def skip(name: str, reason: str) -> None:
    print(f"{name}: skipped ({reason})", flush=True)
    if "--json-out" in sys.argv:
        path = Path(sys.argv[sys.argv.index("--json-out") + 1])
        path.write_text(json.dumps({"name": name, "skipped": reason}))
