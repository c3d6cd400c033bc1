"""The runtime interface: start an operator, wait for it, stop it, find it again after a restart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

JOB_LABEL = "claret.job"
OPERATOR_LABEL = "claret.operator"
INSTANCE_LABEL = "claret.instance"
"""Labels on every operator a runtime starts, to find it again after a restart."""
SERVICE_LABEL = "claret.service"
"""On a pipeline service's container (and its network): the service's instance id."""
SERVICES_JOB = "services"
"""The job id in a pipeline service's spec: services belong to no job (job ids are hex, never this word)."""


@dataclass(frozen=True)
class Mount:
    """A host directory shown to the operator at ``target``."""

    source: Path
    target: str
    read_only: bool


@dataclass(frozen=True)
class OperatorSpec:
    """Everything a runtime needs to run one operator of one job."""

    job_id: str
    operator: str
    image: str
    """``image:tag``; the sandbox runtime ignores it."""
    command: tuple[str, ...]
    env: Mapping[str, str]
    mounts: tuple[Mount, ...]
    cpu: int
    memory_mb: int
    gpu_ids: tuple[str, ...]
    log_path: Path
    """stdout and stderr, interleaved in the order they were written, appended as they stream."""
    network: bool = False
    """Full network access (tests only: operators get none, or their services' networks)."""
    joins: tuple[str, ...] = ()
    """The networks (:attr:`ServiceNetwork.ref`) of the pipeline services this operator uses: it reaches
    them and nothing else. At most one (:func:`joined_network`)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    user: tuple[int, int] | None = None
    """Host uid and gid the operator's processes run as; None leaves the runtime's own choice (the sandbox
    of a service that is not root runs operators as the service's user)."""
    pids_limit: int = 4096
    """Most processes and threads the operator may have at once."""
    max_log_bytes: int = 256 * 1024 * 1024
    """The log file keeps this much of the operator's output, then :func:`truncation_marker`."""
    node: str = ""
    """The node the queue placed it on, which holds ``gpu_ids`` (a Docker Swarm node id with the swarm
    runtime); ``""`` on runtimes that run operators on the jobs process's own machine."""


@dataclass(frozen=True)
class Exit:
    """How an operator ended: its exit code, and a message when the runtime has something to say."""

    code: int
    message: str = ""
    log_truncated: bool = False
    """The operator wrote more than ``OperatorSpec.max_log_bytes``: its log ends with the marker."""
    evicted: bool = False
    """It was lost with the machine it ran on, through no fault of its own: its job ends EVICTED."""


MIN_MEMORY_MB = 32
"""The smallest memory limit an operator gets, on every runtime (a request of 0 means the 512 MB default
already): well above Docker's own minimum (6 MB), enough for an init, a shell and a small script to
start, and still a real bound."""


def memory_limit_bytes(spec: OperatorSpec) -> int:
    """The operator's memory request as the limit its runtime enforces."""
    return max(spec.memory_mb, MIN_MEMORY_MB) * 1024 * 1024


def truncation_marker(limit: int) -> bytes:
    """The line that ends a log cut at ``limit`` bytes, so a reader knows output was dropped."""
    return f"\n[claret: log truncated at {limit} bytes; the operator's further output was dropped]\n".encode()


class Handle(Protocol):
    """A started operator."""

    @property
    def runtime_id(self) -> str:
        """What :meth:`Runtime.attach` needs to find this operator again (container id, process id)."""
        ...

    async def wait(self) -> Exit: ...

    async def stop(self, grace: float) -> None:
        """Ask the operator to stop; kill it after ``grace`` seconds. Returns once it is gone."""
        ...


@dataclass(frozen=True)
class ServiceNetwork:
    """The private network a pipeline service listens on, which the operators that use it join: on every
    runtime, the service's own network namespace, which has a loopback interface and nothing else."""

    ref: str
    """What an operator's :attr:`OperatorSpec.joins` names (a Docker container id; a sandbox's process)."""
    host: str
    """The service's address on that network, as operators reach it."""


def joined_network(spec: OperatorSpec) -> str | None:
    """The one service network the operator joins, or None. An operator shares its service's network
    namespace, and a process has one: an operator cannot use two services."""
    if len(spec.joins) > 1:
        raise RuntimeFailure(
            f"operator {spec.operator!r} uses {len(spec.joins)} running services: an operator joins its "
            f"service's network, and can join one"
        )
    return spec.joins[0] if spec.joins else None


class ServiceHandle(Handle, Protocol):
    """A started pipeline service: an operator-like process with a private network of its own."""

    @property
    def network(self) -> ServiceNetwork: ...


class Runtime(Protocol):
    name: str

    async def start(self, spec: OperatorSpec) -> Handle:
        """Start the operator. Raises :class:`RuntimeFailure` when it cannot be started."""
        ...

    async def attach(self, spec: OperatorSpec, runtime_id: str | None) -> Handle | None:
        """The handle of an operator started before a restart, or None when it is gone. Without a
        ``runtime_id`` (the service died right after starting it), find it by job and operator, or raise
        :class:`NeverStarted` when it provably never ran."""
        ...

    async def start_service(self, spec: OperatorSpec) -> ServiceHandle:
        """Start a pipeline service (``spec.job_id`` is :data:`SERVICES_JOB`) on a private network of its own.
        Raises :class:`RuntimeFailure` when it cannot be started."""
        ...

    async def attach_service(
        self, spec: OperatorSpec, runtime_id: str, network: ServiceNetwork
    ) -> ServiceHandle | None:
        """The handle of a service started before a restart, or None when it is gone (what is left of it is
        removed)."""
        ...

    async def stop_service(self, spec: OperatorSpec, runtime_id: str, grace: float) -> None:
        """Stop a service another jobs process follows (it cleans up once the service ended); returns once
        the stop was asked for."""
        ...

    async def accepts(self, network: ServiceNetwork, port: int) -> bool:
        """Whether something accepts TCP connections at ``port`` of the service on ``network`` (readiness)."""
        ...

    async def request(self, network: ServiceNetwork, port: int, method: str, path: str) -> tuple[int, bytes]:
        """An HTTP request to the service at ``port`` on its network: (status, body); OSError when nothing
        answers (how the platform drives a service's own API, e.g. Triton's model loading)."""
        ...

    async def remove_orphan_services(self, known: Callable[[], Awaitable[set[str]]]) -> list[str]:
        """Remove the services this platform instance started whose id is not among ``known()`` (read after
        the runtime listed its services: one too new to be listed is never taken for an orphan); returns
        their ids."""
        ...

    async def problem(self) -> str | None:
        """Why operators cannot be started right now (engine down...), or None (a readiness check)."""
        ...

    async def remove_orphans(self, running: Callable[[], Awaitable[set[tuple[str, str]]]]) -> list[str]:
        """Remove operators this platform instance started that are not among ``running()`` (job id,
        operator name, read after the runtime listed its operators); returns their runtime ids."""
        ...

    async def close(self) -> None: ...


class WithoutPipelineServices:
    """The pipeline-service half of :class:`Runtime` for a runtime that runs none: a start is refused with
    ``why``, nothing is found again, accepted or orphaned."""

    why = "this runtime runs no pipeline services"

    async def start_service(self, spec: OperatorSpec) -> ServiceHandle:
        raise RuntimeFailure(f"pipeline service {spec.operator!r}: {self.why}")

    async def attach_service(self, spec: OperatorSpec, runtime_id: str, network: ServiceNetwork) -> None:
        return None

    async def stop_service(self, spec: OperatorSpec, runtime_id: str, grace: float) -> None:
        return None

    async def accepts(self, network: ServiceNetwork, port: int) -> bool:
        return False

    async def request(self, network: ServiceNetwork, port: int, method: str, path: str) -> tuple[int, bytes]:
        raise ConnectionRefusedError(self.why)

    async def remove_orphan_services(self, known: Callable[[], Awaitable[set[str]]]) -> list[str]:
        return []


class NeverStarted(Exception):
    """:meth:`Runtime.attach` found proof that the operator never began running (the service died between
    recording the start and making it happen): it is safe to start it afresh."""


class RuntimeFailure(Exception):
    """The runtime could not start an operator; the message says why (missing image, bad mount...)."""
