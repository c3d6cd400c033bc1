"""The jobs domain: a job and its operators, where they stand, and how jobs are chosen.

Plain values, with no database or wire in sight: the tables (:mod:`services.jobs.job_table`) store them,
the servicer (:mod:`services.jobs.servicer`) translates them, the CLI's records mirror them. Enum numbers
are the wire's (``JobState``, ``JobStatus``, ``JobOperatorStatus``, ``JobPriority``), so each side converts
by value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from shared.pipeline_definition import DefinitionFile

__all__ = ["JobFilter", "JobRecord", "JobState", "JobStatus", "JobView", "OperatorRecord", "OperatorStatus", "Priority"]


class JobState(IntEnum):
    """Where a job is in its life: created or queued, running, or ended."""

    PENDING = 1
    RUNNING = 2
    STOPPED = 3


class JobStatus(IntEnum):
    """How a job is doing, or how it ended."""

    HEALTHY = 1
    FAULTED = 2
    CANCELED = 3
    EVICTED = 4
    TERMINATED = 5


class OperatorStatus(IntEnum):
    PENDING = 1
    RUNNING = 2
    COMPLETED = 3
    FAULTED = 4


class Priority(IntEnum):
    """Job priority (0, the wire's UNKNOWN, is not one: :meth:`of` reads it as NORMAL)."""

    LOWER = 1
    NORMAL = 2
    HIGHER = 3
    IMMEDIATE = 4

    @classmethod
    def of(cls, value: int) -> Priority:
        """The priority a request asked for; NORMAL for 0 (not given) or a number the API does not define."""
        try:
            return cls(value)
        except ValueError:
            return cls.NORMAL


@dataclass(frozen=True)
class OperatorRecord:
    """One operator of one job, as the database has it."""

    job_id: str
    name: str
    status: OperatorStatus
    upstream: tuple[str, ...]
    created: float
    started: float | None = None
    stopped: float | None = None
    exit_code: int | None = None
    runtime_id: str | None = None
    """The container id or sandbox process it runs as, to find it again after a restart."""
    gpu_ids: tuple[str, ...] = ()
    node: str = ""
    """Where the queue placed it: a Docker Swarm node id with the swarm runtime, else ``""``."""


@dataclass(frozen=True)
class JobRecord:
    """One job: its definition as it was at Create, where it stands, and when."""

    id: str
    pipeline_id: str
    payload_id: str
    name: str
    priority: Priority
    state: JobState
    status: JobStatus
    files: tuple[DefinitionFile, ...]
    created: float
    variables: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    messages: tuple[str, ...] = ()
    timeout: float | None = None
    queued: float | None = None
    """When Start accepted the job (None before)."""
    started: float | None = None
    """When its first operator started (None while it waits for resources)."""
    stopped: float | None = None
    owner: str | None = None
    """The jobs replica that runs the started job."""


@dataclass(frozen=True)
class JobView:
    """A job with its operators, for Status."""

    job: JobRecord
    operators: list[OperatorRecord]


@dataclass(frozen=True)
class JobFilter:
    """Jobs.List filter: OR within a field, AND across fields; empty fields don't filter. States and statuses
    are the numbers asked for: one that no :class:`JobState` / :class:`JobStatus` has matches no job."""

    states: tuple[int, ...] = ()
    statuses: tuple[int, ...] = ()
    pipeline_ids: tuple[str, ...] = ()
    created_after: float | None = None
    completed_before: float | None = None

    def is_empty(self) -> bool:
        """Whether no field filters anything."""
        return self == JobFilter()


RUNNING_JOBS = JobFilter(states=(JobState.RUNNING,))
"""What Jobs.List answers when given no filter (the API's rule)."""
