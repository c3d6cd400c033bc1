"""A runtime in memory, scripted by the test and recording what it was asked: for fast executor tests.

:class:`MemoryRuntime` implements :class:`~services.jobs.runtimes.base.Runtime` without processes or
containers. Each operator follows a :class:`Script` (exit with a code after a delay or when the test
releases it, ignore a stop until the grace is over, fail to start, or hang in the start). The runtime
stands for the machine, not for the service: what it started keeps running when an executor closes, so a
second executor over the same database re-attaches it, finds it gone (:meth:`MemoryRuntime.vanish`), or is
told it never started (:class:`~services.jobs.runtimes.base.NeverStarted`) when it was asked for one it
never started. Everything it is asked is kept, in order, in :attr:`MemoryRuntime.events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from services.jobs.runtimes.base import Exit, NeverStarted, OperatorSpec, RuntimeFailure, WithoutPipelineServices

STOPPED_CODE = 143
"""Exit code of an operator that stopped when asked (128 + SIGTERM)."""
KILLED_CODE = 137
"""Exit code of an operator killed once the grace was over (128 + SIGKILL)."""

EventKind = Literal["start", "start failed", "start interrupted", "exit", "stop", "attach", "orphan removed"]
OperatorKey = tuple[str, str]
"""(job id, operator name)."""
T = TypeVar("T")


@dataclass(frozen=True)
class Script:
    """What an operator does when started; the default exits 0 at once."""

    code: int = 0
    after: float | None = 0.0
    """Seconds from its start to its exit with ``code``; None: it runs until released or stopped."""
    message: str = ""
    """What the runtime says of its exit (:attr:`Exit.message`)."""
    ignores_stop: bool = False
    """A stop ends it only once the grace is over (killed, :data:`KILLED_CODE`) instead of at once."""
    fails_to_start: str | None = None
    """The start raises :class:`RuntimeFailure` with this message."""
    start_waits: bool = False
    """The start returns only once the test calls :meth:`MemoryRuntime.let_start`; cancelled before (the
    service went away mid-start), the operator never ran."""


RUNS = Script(after=None)
"""An operator that runs until the test releases it, or it is stopped."""


@dataclass(frozen=True)
class Event:
    """One thing the runtime was asked, or one thing an operator did."""

    kind: EventKind
    job_id: str
    operator: str
    at: float
    """``time.monotonic()``."""
    code: int | None = None
    """For "exit"."""
    grace: float | None = None
    """For "stop"."""
    runtime_id: str | None = None
    """For "attach": the id it was asked for (None: look it up by labels)."""


class MemoryOperator:
    """A started operator: the runtime's :class:`~services.jobs.runtimes.base.Handle`."""

    def __init__(self, runtime: MemoryRuntime, spec: OperatorSpec, script: Script, runtime_id: str) -> None:
        self.spec = spec
        self.script = script
        self._runtime = runtime
        self._runtime_id = runtime_id
        loop = asyncio.get_running_loop()
        self._exit: asyncio.Future[Exit] = loop.create_future()
        self.followed = False
        """Someone waits for its exit (the executor has done what it does after a start)."""
        self._timer = None if script.after is None else loop.call_later(script.after, self.end, script.code)

    @property
    def runtime_id(self) -> str:
        return self._runtime_id

    @property
    def running(self) -> bool:
        return not self._exit.done()

    async def wait(self) -> Exit:
        self.followed = True
        return await asyncio.shield(self._exit)  # a cancelled waiter leaves the operator running

    async def stop(self, grace: float) -> None:
        self._runtime.record("stop", self.spec, grace=grace)
        if self.running and self.script.ignores_stop:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exit), grace)
            self.end(KILLED_CODE, "killed")
        else:
            self.end(STOPPED_CODE)
        await asyncio.shield(self._exit)

    def end(self, code: int = 0, message: str | None = None) -> None:
        """Exit now with ``code`` (and the script's message unless one is given); nothing if it has ended."""
        if self._exit.done():
            return
        if self._timer is not None:
            self._timer.cancel()
        self._exit.set_result(Exit(code, self.script.message if message is None else message))
        self._runtime.record("exit", self.spec, code=code)


class MemoryRuntime(WithoutPipelineServices):
    """The machine operators run on, in memory; see the module docstring."""

    name = "memory"
    why = "the memory runtime runs no pipeline services (tests/test_services.py runs them)"

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.trouble: str | None = None
        """What :meth:`problem` answers."""
        self.closes = 0
        self._scripts: dict[str | OperatorKey, Script] = {}
        self._operators: dict[str, MemoryOperator] = {}
        """By runtime id: every operator started and not removed, running or ended."""
        self._starting: dict[OperatorKey, asyncio.Future[None]] = {}
        self._ids = itertools.count(1)

    # -- scripting -----------------------------------------------------------------------------------------

    def plan(self, operator: str, script: Script, *, job_id: str | None = None) -> None:
        """What operator ``operator`` does from its next start on, in every job or only in ``job_id``."""
        self._scripts[operator if job_id is None else (job_id, operator)] = script

    def release(self, job_id: str, operator: str, code: int = 0, message: str | None = None) -> None:
        """Make a running operator exit with ``code``."""
        handle = self.operator(job_id, operator)
        assert handle.running, f"operator {operator} of job {job_id} is not running"
        handle.end(code, message)

    def let_start(self, job_id: str, operator: str) -> None:
        """Let a start held by :attr:`Script.start_waits` return."""
        self._starting[(job_id, operator)].set_result(None)

    def vanish(self, job_id: str, operator: str) -> None:
        """The operator is gone from the machine (its container removed behind the service's back)."""
        handle = self.operator(job_id, operator)
        handle.end(KILLED_CODE, "gone")
        del self._operators[handle.runtime_id]

    # -- what happened -------------------------------------------------------------------------------------

    def record(
        self,
        kind: EventKind,
        spec: OperatorSpec,
        *,
        code: int | None = None,
        grace: float | None = None,
        runtime_id: str | None = None,
    ) -> None:
        self.events.append(Event(kind, spec.job_id, spec.operator, time.monotonic(), code, grace, runtime_id))

    def of(self, job_id: str, kind: EventKind | None = None) -> list[Event]:
        """The events of one job (of one kind), in order."""
        return [e for e in self.events if e.job_id == job_id and (kind is None or e.kind == kind)]

    def names(self, job_id: str, kind: EventKind) -> list[str]:
        """The operators of one job that met events of ``kind``, in order (one entry per event)."""
        return [e.operator for e in self.of(job_id, kind)]

    def history(self, job_id: str) -> list[tuple[EventKind, str]]:
        """(kind, operator) of every event of one job, in order."""
        return [(e.kind, e.operator) for e in self.of(job_id)]

    def operator(self, job_id: str, operator: str) -> MemoryOperator:
        """The operator's latest start that is still on the machine; KeyError when there is none."""
        found = [h for h in self._operators.values() if (h.spec.job_id, h.spec.operator) == (job_id, operator)]
        if not found:
            raise KeyError(f"operator {operator} of job {job_id} is not on the machine")
        return found[-1]

    def live(self) -> list[MemoryOperator]:
        """Every operator running now, in the order they started."""
        return [h for h in self._operators.values() if h.running]

    async def started(self, job_id: str, operator: str, within: float = 2.0) -> MemoryOperator:
        """The operator once it runs and someone waits for its exit: the executor is done starting it (its
        runtime id recorded), so what the test does next cannot fall between the start and the follow-up."""
        return await self._poll(lambda: self._followed(job_id, operator), within, f"{operator} of {job_id} started")

    def _followed(self, job_id: str, operator: str) -> MemoryOperator | None:
        with contextlib.suppress(KeyError):
            handle = self.operator(job_id, operator)
            return handle if handle.followed or not handle.running else None
        return None

    async def starting(self, job_id: str, operator: str, within: float = 2.0) -> None:
        """Once a start held by :attr:`Script.start_waits` is waiting for :meth:`let_start`."""
        await self._poll(lambda: (job_id, operator) in self._starting or None, within, f"{operator} starting")

    @staticmethod
    async def _poll(found: Callable[[], T | None], within: float, what: str) -> T:
        deadline = time.monotonic() + within
        while (value := found()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within} s: {what}")
            await asyncio.sleep(0.002)
        return value

    # -- the Runtime protocol ------------------------------------------------------------------------------

    def _script(self, spec: OperatorSpec) -> Script:
        return self._scripts.get((spec.job_id, spec.operator)) or self._scripts.get(spec.operator) or Script()

    async def start(self, spec: OperatorSpec) -> MemoryOperator:
        script = self._script(spec)
        key = (spec.job_id, spec.operator)
        if script.fails_to_start is not None:
            self.record("start failed", spec)
            raise RuntimeFailure(script.fails_to_start)
        if script.start_waits:
            self._starting[key] = asyncio.get_running_loop().create_future()
            try:
                await self._starting[key]
            except asyncio.CancelledError:
                self.record("start interrupted", spec)
                raise
            finally:
                del self._starting[key]
        handle = MemoryOperator(self, spec, script, f"memory-{next(self._ids)}")
        self._operators[handle.runtime_id] = handle
        self.record("start", spec)
        return handle

    async def attach(self, spec: OperatorSpec, runtime_id: str | None) -> MemoryOperator | None:
        self.record("attach", spec, runtime_id=runtime_id)
        if runtime_id is not None:
            return self._operators.get(runtime_id)
        found = [h for h in self._operators.values() if h.spec.labels == spec.labels]
        if not found:
            raise NeverStarted(f"no operator is labelled {dict(spec.labels)}")
        return found[-1]

    async def problem(self) -> str | None:
        return self.trouble

    async def remove_orphans(self, running: Callable[[], Awaitable[set[tuple[str, str]]]]) -> list[str]:
        listed = self.live()  # listed first, then the database asked: as the real runtimes do
        owned = await running()
        removed = []
        for handle in listed:
            if (handle.spec.job_id, handle.spec.operator) not in owned:
                handle.end(KILLED_CODE, "removed")
                del self._operators[handle.runtime_id]
                self.record("orphan removed", handle.spec)
                removed.append(handle.runtime_id)
        return removed

    async def close(self) -> None:
        self.closes += 1  # the machine stays: what runs keeps running
