"""The executor on an in-memory runtime (tests/memory_runtime.py): DAG walking, faults, cancel, timeouts,
resources and restart recovery, each in a fraction of a second.

Jobs are inserted and started as ``JobManager.create`` and ``start`` do (``job_table.insert``,
``mark_queued``, ``Executor.admit``) over a real SQLite database and payload tree, with the local queue of
one jobs process. Each test reads the outcome back from the database and from what the runtime recorded.
Operators that must still be running at some point are scripted to run until the test releases them, so
nothing depends on timing but the timeouts themselves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest

from services.jobs import job_table
from services.jobs.executor import Executor, ExecutorSettings, OperatorLimits
from services.jobs.model import JobRecord, JobState, JobStatus, OperatorRecord, OperatorStatus, Priority
from services.jobs.queue import LocalQueue
from services.jobs.runtimes.base import INSTANCE_LABEL, JOB_LABEL, OPERATOR_LABEL, Mount
from services.jobs.scheduler import Capacity, Scheduler
from shared import ids
from shared.db import Database
from shared.metrics import Metrics
from shared.payload_store import PayloadStore
from shared.pipeline_definition import DefinitionFile, Pipeline, load_pipeline
from tests.memory_runtime import KILLED_CODE, RUNS, STOPPED_CODE, MemoryRuntime, Script

T = TypeVar("T")

DATA = Path(__file__).parent / "data"
GRACE = 0.05
"""The executor's stop grace: seconds between the stop and the kill."""
SETTLE = 0.05
"""Seconds given to an executor that would wrongly start an operator, for the start to show."""
RUNTIME_ID_DELAY = 0.3
"""Seconds after its start when a still running operator's runtime id is written."""
NODE = Capacity(cpus=8, memory_mb=8192, gpu_ids=("GPU-a", "GPU-b"))

PENDING, RUNNING = OperatorStatus.PENDING, OperatorStatus.RUNNING
COMPLETED, FAULTED = OperatorStatus.COMPLETED, OperatorStatus.FAULTED


def pipeline(graph: Mapping[str, Sequence[str]], *, extra: Mapping[str, str] | None = None, top: str = "") -> str:
    """A pipeline of ``graph``'s operators in its order, each reading the outputs of the operators it maps to
    (a root reads the payload's input) and writing /output. ``extra`` adds YAML lines to an operator, ``top``
    to the pipeline."""
    lines = ["api-version: 0.4.0", "name: test", *top.splitlines(), "operators:"]
    for name, upstream in graph.items():
        inputs = ", ".join(f"{{from: {u}, path: /in/{u}}}" for u in upstream) or "{path: /input}"
        lines += [
            f"- name: {name}",
            '  container: {image: busybox, command: ["true"]}',
            f"  input: [{inputs}]",
            "  output: [{path: /output}]",
            *(f"  {line}" for line in (extra or {}).get(name, "").splitlines()),
        ]
    return "\n".join(lines) + "\n"


ONE = pipeline({"op": []})
PAIR = pipeline({"a": [], "b": ["a"]})
CHAIN = pipeline({"a": [], "b": ["a"], "c": ["b"]})
DIAMOND = (DATA / "diamond.yaml").read_text()
"""split -> (left, right) -> join."""
FAN = pipeline({"root": [], "x": ["root"], "y": ["root"], "z": ["root"], "join": ["x", "y", "z"]})


def scaled(model: Pipeline, factor: float) -> Pipeline:
    """The pipeline with its timeouts times ``factor``: whole seconds in the model (the definition
    language's unit), any number of seconds to the executor (``asyncio.timeout``, ``call_later``)."""
    if factor == 1:
        return model
    operators = tuple(
        op if op.timeout is None else dataclasses.replace(op, timeout=op.timeout * factor)  # type: ignore[arg-type]
        for op in model.operators
    )
    return dataclasses.replace(model, timeout=model.timeout * factor, operators=operators)  # type: ignore[arg-type]


async def eventually(read: Callable[[], Awaitable[T | None]], what: str, within: float = 2.0) -> T:
    """What ``read`` returns once it is not None; fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while (value := await read()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.005)
    return value


@dataclass
class Bench:
    """A database, a payload tree and a machine (the memory runtime), and the executors run over them."""

    db: Database
    store: PayloadStore
    runtime: MemoryRuntime
    settings: ExecutorSettings
    executors: list[Executor] = field(default_factory=list)

    @property
    def executor(self) -> Executor:
        """The latest executor: the jobs process running now."""
        return self.executors[-1]

    @property
    def scheduler(self) -> Scheduler[tuple[str, str]]:
        queue = self.executor.queue
        assert isinstance(queue, LocalQueue)
        return queue.scheduler

    def new_executor(self, capacity: Capacity = NODE) -> Executor:
        """A jobs process over the same database, payloads and machine, with a node of ``capacity``."""
        queue = LocalQueue(Scheduler(capacity))
        executor = Executor(self.db, self.store, self.runtime, queue, self.settings, Metrics())
        self.executors.append(executor)
        return executor

    async def restart(self, capacity: Capacity = NODE) -> Executor:
        """The jobs process stops (its operators keep running) and a new one carries on what was in flight."""
        await self.executor.close()
        executor = self.new_executor(capacity)
        await executor.recover(every=True)
        return executor

    async def start(self, text: str, *, time_scale: float = 1) -> str:
        """Create and start a job of the pipeline ``text`` as ``JobManager.create`` and ``start`` do: its
        operators inserted PENDING, the job marked queued, the executor handed it. ``time_scale`` shrinks
        the definition's timeouts (at least 1 s there) so that they show within a fraction of a second."""
        files = (DefinitionFile(path="pipeline.yaml", content=text),)
        now = ids.now()
        job = JobRecord(
            id=ids.new_id(),
            pipeline_id=ids.new_id(),
            payload_id=ids.new_id(),
            name="job",
            priority=Priority.NORMAL,
            state=JobState.PENDING,
            status=JobStatus.HEALTHY,
            files=files,
            created=now,
        )
        operators = [
            OperatorRecord(job_id=job.id, name=op.name, status=PENDING, upstream=op.upstream, created=now)
            for op in load_pipeline(files).operators
        ]
        self.store.create(job.payload_id)
        await self.db.write(lambda conn: job_table.insert(conn, job, operators))
        model = scaled(self.executor.load(job, {}), time_scale)
        queued = ids.now()
        marked = partial(
            job_table.mark_queued,
            job_id=job.id,
            variables={},
            timeout=model.timeout,
            at=queued,
            owner=self.settings.replica,
        )
        assert await self.db.write(marked)
        await self.executor.admit(dataclasses.replace(job, queued=queued, timeout=model.timeout), model)
        return job.id

    async def job(self, job_id: str) -> JobRecord:
        job = await self.db.read(partial(job_table.get, job_id=job_id))
        assert job is not None
        return job

    async def operators(self, job_id: str) -> dict[str, OperatorRecord]:
        return {op.name: op for op in await self.db.read(partial(job_table.operators, job_id=job_id))}

    async def stopped(self, job_id: str) -> JobRecord:
        """The job once the database says it stopped."""

        async def read() -> JobRecord | None:
            job = await self.job(job_id)
            return job if job.stopped is not None else None

        return await eventually(read, f"job {job_id} stopped")

    async def operator_when(self, job_id: str, name: str, holds: Callable[[OperatorRecord], bool]) -> OperatorRecord:
        """The operator's record once ``holds`` is true of it."""

        async def read() -> OperatorRecord | None:
            record = (await self.operators(job_id))[name]
            return record if holds(record) else None

        return await eventually(read, f"operator {name} of job {job_id} as expected")

    async def exit_code(self, job_id: str, name: str) -> int | None:
        """The operator's exit code once the database has one."""
        return (await self.operator_when(job_id, name, lambda op: op.exit_code is not None)).exit_code

    async def never_start(self, job_id: str, *names: str) -> None:
        """Given time to, the executor started none of these operators: not in the runtime, PENDING in the
        database."""
        await asyncio.sleep(SETTLE)
        assert not set(names) & set(self.runtime.names(job_id, "start"))
        operators = await self.operators(job_id)
        assert [operators[n].status for n in names] == [PENDING] * len(names)

    async def both_branches_running(self, left: Script = RUNS) -> str:
        """A diamond job whose ``left`` (following ``left``) and ``right`` run until released: the split is
        done, the join waits."""
        self.runtime.plan("left", left)
        self.runtime.plan("right", RUNS)
        job_id = await self.start(DIAMOND)
        await self.runtime.started(job_id, "left")
        await self.runtime.started(job_id, "right")
        return job_id

    def assert_stopped_with_grace(self, job_id: str, *names: str) -> None:
        """The runtime was asked once to stop each of these operators (in any order), with the grace."""
        assert sorted((e.operator, e.grace) for e in self.runtime.of(job_id, "stop")) == [(n, GRACE) for n in names]


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    db = await Database.open(tmp_path / "db.sqlite")
    settings = ExecutorSettings(
        replica="replica-1",
        instance="instance-1",
        logs_path=tmp_path / "logs",
        default_timeout=60,
        max_timeout=600,
        stop_grace=GRACE,
        limits=OperatorLimits(uid=1234, gid=2345, pids=64, log_mb=1, output_mb=10),
        runtime_id_delay=RUNTIME_ID_DELAY,
    )
    bench = Bench(db, PayloadStore(tmp_path / "payloads"), MemoryRuntime(), settings)
    bench.new_executor()
    try:
        yield bench
    finally:
        for executor in bench.executors:
            await executor.close()
        await db.close()


def assert_ended(job: JobRecord, status: JobStatus, *messages: str) -> None:
    assert (job.state, job.status, job.messages) == (JobState.STOPPED, status, messages)


# -- walking the DAG ---------------------------------------------------------------------------------------


async def test_a_chain_runs_one_operator_after_another(bench: Bench) -> None:
    """Each operator of a chain starts only once its upstream one exited 0; the job ends HEALTHY with every
    operator COMPLETED, and the database knows each operator by the runtime id it was started as (written
    with its end: each ended long before the runtime id delay)."""
    job_id = await bench.start(CHAIN)

    assert_ended(await bench.stopped(job_id), JobStatus.HEALTHY)
    assert bench.runtime.history(job_id) == [(kind, op) for op in "abc" for kind in ("start", "exit")]
    operators = await bench.operators(job_id)
    assert {n: (op.status, op.exit_code) for n, op in operators.items()} == dict.fromkeys("abc", (COMPLETED, 0))
    assert {n: op.runtime_id for n, op in operators.items()} == {
        n: bench.runtime.operator(job_id, n).runtime_id for n in "abc"
    }


async def test_the_branches_of_a_diamond_run_together(bench: Bench) -> None:
    """Both middle operators of a diamond are running at once (neither waits for the other to end), and the
    job completes once they and the join have."""
    job_id = await bench.both_branches_running()
    assert sorted(op.spec.operator for op in bench.runtime.live()) == ["left", "right"]
    assert {n: op.status for n, op in (await bench.operators(job_id)).items()} == {
        "split": COMPLETED,
        "left": RUNNING,
        "right": RUNNING,
        "join": PENDING,
    }

    bench.runtime.release(job_id, "left")
    bench.runtime.release(job_id, "right")

    assert_ended(await bench.stopped(job_id), JobStatus.HEALTHY)
    history = bench.runtime.history(job_id)
    assert history[:2] == [("start", "split"), ("exit", "split")]
    assert set(history[2:4]) == {("start", "left"), ("start", "right")}
    assert history[4:] == [("exit", "left"), ("exit", "right"), ("start", "join"), ("exit", "join")]


async def test_a_fan_in_waits_for_every_upstream_operator(bench: Bench) -> None:
    """The join of a diamond does not start when one branch completed while the other still runs; it
    starts once both have."""
    job_id = await bench.both_branches_running()

    bench.runtime.release(job_id, "right")
    await bench.operator_when(job_id, "right", lambda op: op.status is COMPLETED)
    await bench.never_start(job_id, "join")

    bench.runtime.release(job_id, "left")
    assert_ended(await bench.stopped(job_id), JobStatus.HEALTHY)
    assert bench.runtime.history(job_id)[-4:] == [
        ("exit", "right"),
        ("exit", "left"),
        ("start", "join"),
        ("exit", "join"),
    ]


WIRED = """\
api-version: 0.4.0
name: wired
operators:
- name: producer
  container:
    image: registry.example/producer
    tag: "1.2"
    command: ["produce", "--fast"]
  variables:
    MODE: fast
    NVIDIA_CLARA_JOB_ID: spoofed
  requests: {cpu: 2, memory: 256, gpu: 1}
  input: [{path: /input}]
  output: [{path: /results}]
- name: consumer
  container:
    image: busybox
    command: ["true"]
  input: [{from: producer, path: /in}]
  output: [{name: report, path: /out}]
"""


async def test_operators_get_the_platform_environment_and_the_payload_wiring(bench: Bench) -> None:
    """What the runtime is asked to start: the operator's own variables under the NVIDIA_CLARA_* ones
    (which win), its granted GPU in both visibility variables, the payload's input read-only, its output
    folder writable and mounted read-only at the consumer's input, labels to find it again, the operator
    user, its requests and its log file."""
    job_id = await bench.start(WIRED)
    assert_ended(await bench.stopped(job_id), JobStatus.HEALTHY)
    job = await bench.job(job_id)
    payload = bench.store.path(job.payload_id)
    producer = bench.runtime.operator(job_id, "producer").spec
    consumer = bench.runtime.operator(job_id, "consumer").spec

    platform = {
        "NVIDIA_CLARA_JOB_ID": job_id,
        "NVIDIA_CLARA_JOB_NAME": "job",
        "NVIDIA_CLARA_PAYLOAD_ID": job.payload_id,
        "NVIDIA_CLARA_PIPELINE_ID": job.pipeline_id,
        "NVIDIA_CLARA_NOSYNCLOCK": "1",
    }
    assert producer.env == {
        "MODE": "fast",
        **platform,
        "NVIDIA_CLARA_STAGE_NAME": "producer",
        "NVIDIA_CLARA_INPUT": "/input",
        "NVIDIA_CLARA_OUTPUT": "/results",
        "NVIDIA_VISIBLE_DEVICES": "GPU-a",
        "CUDA_VISIBLE_DEVICES": "GPU-a",
    }
    assert consumer.env == {
        **platform,
        "NVIDIA_CLARA_STAGE_NAME": "consumer",
        "NVIDIA_CLARA_INPUT": "/in",
        "NVIDIA_CLARA_OUTPUT": "/out",
        "NVIDIA_VISIBLE_DEVICES": "void",
        "CUDA_VISIBLE_DEVICES": "",
    }
    produced = payload / "operators" / "producer"
    assert producer.mounts == (Mount(payload / "input", "/input", True), Mount(produced, "/results", False))
    assert consumer.mounts == (
        Mount(produced, "/in", True),
        Mount(produced.parent / "consumer" / "report", "/out", False),
    )
    assert produced.is_dir() and (produced.parent / "consumer" / "report").is_dir()

    assert (producer.image, producer.command) == ("registry.example/producer:1.2", ("produce", "--fast"))
    assert (producer.cpu, producer.memory_mb, producer.gpu_ids, consumer.gpu_ids) == (2, 256, ("GPU-a",), ())
    assert producer.labels == {JOB_LABEL: job_id, OPERATOR_LABEL: "producer", INSTANCE_LABEL: "instance-1"}
    assert producer.user == (1234, 2345) and producer.pids_limit == 64 and producer.max_log_bytes == 1024 * 1024
    assert producer.log_path == bench.settings.logs_path / job_id / "producer.log"
    assert (await bench.operators(job_id))["producer"].gpu_ids == ("GPU-a",)


# -- faults ------------------------------------------------------------------------------------------------


async def test_a_failing_operator_faults_the_job_and_stops_its_siblings(bench: Bench) -> None:
    """An operator exiting non-zero ends the job FAULTED with a message naming it and its code; the sibling
    still running is stopped with the grace, and the operator downstream never starts."""
    job_id = await bench.both_branches_running()

    bench.runtime.release(job_id, "left", code=3, message="out of memory")

    assert_ended(await bench.stopped(job_id), JobStatus.FAULTED, "operator 'left' exited with code 3: out of memory")
    assert await bench.exit_code(job_id, "right") == STOPPED_CODE
    bench.assert_stopped_with_grace(job_id, "right")
    await bench.never_start(job_id, "join")
    operators = await bench.operators(job_id)
    assert {n: (op.status, op.exit_code) for n, op in operators.items()} == {
        "split": (COMPLETED, 0),
        "left": (FAULTED, 3),
        "right": (FAULTED, STOPPED_CODE),
        "join": (PENDING, None),
    }


async def test_an_operator_that_cannot_start_faults_the_job(bench: Bench) -> None:
    """A start the runtime refuses (RuntimeFailure) faults the job with the runtime's reason; the
    operator's grant goes back and nothing downstream starts."""
    bench.runtime.plan("a", Script(fails_to_start="image busybox:nope not found"))
    job_id = await bench.start(PAIR)

    assert_ended(
        await bench.stopped(job_id), JobStatus.FAULTED, "operator 'a' could not start: image busybox:nope not found"
    )
    await bench.never_start(job_id, "b")
    assert bench.runtime.history(job_id) == [("start failed", "a")]
    a = (await bench.operators(job_id))["a"]
    assert (a.status, a.exit_code, a.runtime_id) == (FAULTED, -1, None)
    assert bench.scheduler.free == NODE


# -- cancel ------------------------------------------------------------------------------------------------


async def test_cancel_stops_running_operators_and_withdraws_waiting_ones(bench: Bench) -> None:
    """On a node with room for two operators, x (which ignores stops) and y run while z waits in the queue.
    Cancel records the job CANCELED and x and y ended in the same transaction (the job's stop time: no
    RUNNING operator on the stopped job) while they are still stopping; each gets a stop with the grace, x
    is killed once the grace is over, z leaves the queue, and neither z nor the join ever starts."""
    room = Capacity(cpus=2, memory_mb=4096, gpu_ids=())
    bench.new_executor(room)
    bench.runtime.plan("x", Script(after=None, ignores_stop=True))
    bench.runtime.plan("y", RUNS)
    bench.runtime.plan("z", RUNS)
    job_id = await bench.start(FAN)
    await bench.runtime.started(job_id, "x")
    await bench.runtime.started(job_id, "y")
    assert bench.scheduler.is_waiting((job_id, "z"))

    await bench.executor.end(job_id, JobStatus.CANCELED, "canceled: enough")
    assert bench.runtime.operator(job_id, "x").running
    assert not bench.scheduler.is_waiting((job_id, "z"))

    job = await bench.job(job_id)
    assert_ended(job, JobStatus.CANCELED, "canceled: enough")
    operators = await bench.operators(job_id)
    assert {n: (op.status, op.stopped) for n, op in operators.items()} == {
        "root": (COMPLETED, operators["root"].stopped),
        "x": (FAULTED, job.stopped),
        "y": (FAULTED, job.stopped),
        "z": (PENDING, None),
        "join": (PENDING, None),
    }
    assert await bench.exit_code(job_id, "x") == KILLED_CODE
    assert await bench.exit_code(job_id, "y") == STOPPED_CODE
    bench.assert_stopped_with_grace(job_id, "x", "y")
    stop, kill = (next(e for e in bench.runtime.of(job_id, kind) if e.operator == "x") for kind in ("stop", "exit"))
    assert kill.at - stop.at >= GRACE * 0.9
    await bench.never_start(job_id, "z", "join")
    assert bench.scheduler.free == room


async def test_an_operator_started_after_a_cancel_is_stopped_at_once(bench: Bench) -> None:
    """An operator whose start was under way when its job was canceled is ended with the job, and stopped
    as soon as the runtime has started it."""
    bench.runtime.plan("op", Script(after=None, start_waits=True))
    job_id = await bench.start(ONE)
    await bench.runtime.starting(job_id, "op")

    await bench.executor.end(job_id, JobStatus.CANCELED, "canceled")
    assert_ended(await bench.job(job_id), JobStatus.CANCELED, "canceled")
    assert (await bench.operators(job_id))["op"].status is FAULTED

    bench.runtime.let_start(job_id, "op")
    assert await bench.exit_code(job_id, "op") == STOPPED_CODE
    assert bench.runtime.history(job_id) == [("start", "op"), ("stop", "op"), ("exit", "op")]
    assert bench.scheduler.free == NODE


# -- timeouts ----------------------------------------------------------------------------------------------


async def test_a_job_past_its_timeout_is_terminated(bench: Bench) -> None:
    """The pipeline's ``timeout`` (counted from the first operator's start) ends the job TERMINATED and
    stops what runs."""
    bench.runtime.plan("op", RUNS)
    job_id = await bench.start(pipeline({"op": []}, top="timeout: 2"), time_scale=0.1)

    job = await bench.stopped(job_id)
    assert_ended(job, JobStatus.TERMINATED, "job timed out after 0.2 s")
    assert job.started is not None and job.stopped is not None and job.stopped - job.started >= 0.2 * 0.9
    assert await bench.exit_code(job_id, "op") == STOPPED_CODE
    bench.assert_stopped_with_grace(job_id, "op")


async def test_an_operator_past_its_own_timeout_terminates_the_job(bench: Bench) -> None:
    """An operator's ``timeout`` ends its job TERMINATED, naming it; it is stopped and nothing downstream
    starts."""
    bench.runtime.plan("a", RUNS)
    job_id = await bench.start(pipeline({"a": [], "b": ["a"]}, extra={"a": "timeout: 1"}), time_scale=0.1)

    assert_ended(await bench.stopped(job_id), JobStatus.TERMINATED, "operator 'a' timed out after 0.1 s")
    assert await bench.exit_code(job_id, "a") == STOPPED_CODE
    bench.assert_stopped_with_grace(job_id, "a")
    await bench.never_start(job_id, "b")


# -- resources ---------------------------------------------------------------------------------------------


async def test_with_room_for_one_operator_two_jobs_run_one_after_the_other(bench: Bench) -> None:
    """On a node with one CPU, a second job's operator waits in the queue while the first runs, and starts
    once the first's grant is released."""
    room = Capacity(cpus=1, memory_mb=1024, gpu_ids=())
    bench.new_executor(room)
    bench.runtime.plan("op", RUNS)
    first = await bench.start(ONE)
    await bench.runtime.started(first, "op")

    second = await bench.start(ONE)
    assert bench.scheduler.is_waiting((second, "op"))
    await bench.never_start(second, "op")
    assert (await bench.job(second)).state is JobState.PENDING

    bench.runtime.release(first, "op")
    await bench.runtime.started(second, "op")
    bench.runtime.release(second, "op")

    for job_id in (first, second):
        assert_ended(await bench.stopped(job_id), JobStatus.HEALTHY)
    assert [(e.kind, e.job_id) for e in bench.runtime.events] == [
        ("start", first),
        ("exit", first),
        ("start", second),
        ("exit", second),
    ]
    assert bench.scheduler.free == room


# -- restart recovery --------------------------------------------------------------------------------------


async def running_first_of_pair(bench: Bench) -> str:
    """A job of ``a -> b`` whose ``a`` runs until released (and is recorded with its runtime id)."""
    bench.runtime.plan("a", RUNS)
    job_id = await bench.start(PAIR)
    await bench.runtime.started(job_id, "a")
    await bench.operator_when(job_id, "a", lambda op: op.runtime_id is not None)
    return job_id


async def test_a_running_operator_gets_its_runtime_id_written_after_a_while_not_at_its_start(bench: Bench) -> None:
    """A short operator's runtime id goes into its end's transaction, so none is written at the start; one that
    still runs gets it written once the delay has passed."""
    bench.runtime.plan("a", RUNS)
    job_id = await bench.start(PAIR)
    await bench.runtime.started(job_id, "a")
    started = time.monotonic()
    assert (await bench.operators(job_id))["a"].runtime_id is None
    recorded = await bench.operator_when(job_id, "a", lambda op: op.runtime_id is not None)
    assert time.monotonic() - started >= RUNTIME_ID_DELAY * 0.9
    assert recorded.runtime_id == bench.runtime.operator(job_id, "a").runtime_id


async def test_after_a_restart_a_running_operator_is_reattached_and_its_end_moves_the_job_on(bench: Bench) -> None:
    """A new executor finds the operator still running by its recorded runtime id, holds its grant again,
    and when it completes starts the next operator; nothing is started twice."""
    job_id = await running_first_of_pair(bench)
    runtime_id = (await bench.operators(job_id))["a"].runtime_id
    assert runtime_id == bench.runtime.operator(job_id, "a").runtime_id

    await bench.restart()
    assert [(e.operator, e.runtime_id) for e in bench.runtime.of(job_id, "attach")] == [("a", runtime_id)]
    assert set(bench.scheduler.held) == {(job_id, "a")}

    bench.runtime.release(job_id, "a")
    assert_ended(await bench.stopped(job_id), JobStatus.HEALTHY)
    assert bench.runtime.names(job_id, "start") == ["a", "b"]
    assert {n: op.status for n, op in (await bench.operators(job_id)).items()} == {"a": COMPLETED, "b": COMPLETED}
    assert bench.runtime.closes == 1


async def test_an_operator_gone_after_a_restart_evicts_its_job(bench: Bench) -> None:
    """An operator the runtime no longer has (attach returns None) ends its job EVICTED, naming it; the
    operator is FAULTED and the next one never starts."""
    job_id = await running_first_of_pair(bench)
    bench.runtime.vanish(job_id, "a")

    await bench.restart()

    assert_ended(await bench.job(job_id), JobStatus.EVICTED, "operator 'a' was lost while the jobs service was down")
    assert (await bench.operators(job_id))["a"].status is FAULTED
    await bench.never_start(job_id, "b")
    assert bench.scheduler.free == NODE


async def test_an_operator_that_never_started_is_started_afresh_after_a_restart(bench: Bench) -> None:
    """The service went away between recording an operator RUNNING and the runtime starting it: the runtime
    proves it never ran (NeverStarted, looked up without a runtime id) and the new executor starts it
    again; the job then completes."""
    bench.runtime.plan("a", Script(start_waits=True))
    job_id = await bench.start(PAIR)
    await bench.runtime.starting(job_id, "a")
    a = await bench.operator_when(job_id, "a", lambda op: op.status is RUNNING)
    assert a.runtime_id is None
    bench.runtime.plan("a", Script())

    await bench.restart()

    assert_ended(await bench.stopped(job_id), JobStatus.HEALTHY)
    assert bench.runtime.history(job_id) == [
        ("start interrupted", "a"),
        ("attach", "a"),
        ("start", "a"),
        ("exit", "a"),
        ("start", "b"),
        ("exit", "b"),
    ]
    assert [e.runtime_id for e in bench.runtime.of(job_id, "attach")] == [None]


async def test_an_operator_left_running_by_a_shutdown_during_a_stop_is_removed_at_the_next_start(
    bench: Bench,
) -> None:
    """A job canceled just before the service stopped leaves an operator that ignored the stop running; the
    next executor removes it as an orphan before anything else, and the job stays CANCELED."""
    bench.runtime.plan("op", Script(after=None, ignores_stop=True))
    job_id = await bench.start(ONE)
    await bench.runtime.started(job_id, "op")
    await bench.executor.end(job_id, JobStatus.CANCELED, "canceled")
    await bench.executor.close()
    assert bench.runtime.operator(job_id, "op").running

    await bench.new_executor().recover(every=True)

    assert bench.runtime.live() == []
    assert bench.runtime.history(job_id)[-1] == ("orphan removed", "op")
    assert_ended(await bench.job(job_id), JobStatus.CANCELED, "canceled")


async def test_a_reattached_operator_the_node_can_no_longer_hold_is_stopped_and_its_job_evicted(bench: Bench) -> None:
    """After a restart on a node without the GPU an operator was granted, the operator is stopped at once
    (grace 0) instead of over-committing the node, and its job is EVICTED."""
    bench.runtime.plan("op", RUNS)
    job_id = await bench.start(pipeline({"op": []}, extra={"op": "requests: {gpu: 1}"}))
    await bench.runtime.started(job_id, "op")

    await bench.restart(Capacity(cpus=8, memory_mb=8192, gpu_ids=("GPU-z",)))

    (message,) = (await bench.job(job_id)).messages  # it says why: the node changed, nothing was lost
    assert message.startswith("operator 'op' was stopped: this node can no longer hold what it was granted ("), message
    assert (await bench.job(job_id)).status is JobStatus.EVICTED
    assert [(e.operator, e.grace) for e in bench.runtime.of(job_id, "stop")] == [("op", 0)]
    assert bench.runtime.live() == []
    assert bench.scheduler.free == Capacity(cpus=8, memory_mb=8192, gpu_ids=("GPU-z",))


async def test_every_survivor_is_held_again_before_anything_new_starts(bench: Bench) -> None:
    """After a restart, the operators still running get their grants back before the queue hands out more:
    one that ended while no jobs service ran moves its job on at once, and new operators must not take what
    a survivor adopted later holds (it would be stopped, its job evicted)."""
    two_cpus = Capacity(cpus=2, memory_mb=8192, gpu_ids=())
    bench.new_executor(two_cpus)
    for name in ("first", "x", "y", "op"):
        bench.runtime.plan(name, RUNS)
    fan_out = await bench.start(pipeline({"first": [], "x": ["first"], "y": ["first"]}))
    survivor = await bench.start(pipeline({"op": []}))
    await bench.runtime.started(fan_out, "first")
    await bench.runtime.started(survivor, "op")

    await bench.executor.close()
    bench.runtime.release(fan_out, "first")  # it ends while no jobs service runs
    await bench.new_executor(two_cpus).recover(every=True)

    await bench.runtime.started(fan_out, "x")  # the one cpu left free
    await bench.never_start(fan_out, "y")
    assert (await bench.job(survivor)).stopped is None
    bench.runtime.release(survivor, "op")
    assert_ended(await bench.stopped(survivor), JobStatus.HEALTHY)
    await bench.runtime.started(fan_out, "y")
