"""Jobs replicas sharing the queue and the GPU ledger through the database (CLARET_QUEUE=database).

Two real `claret serve` processes on one data directory, sandbox runtime, two GPUs declared: operators run
exactly once, no GPU is ever held twice at a time (by the ledger's history and by what each operator saw in
NVIDIA_VISIBLE_DEVICES), a Cancel reaches the replica that runs the job, and a killed replica's jobs are
carried on by the other. The queue's decisions across replicas are tested on a real SQLite file below.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import grpc
import pytest

from protos.nvidia.clara.platform import clara_pb2, clara_pb2_grpc, common_pb2
from protos.nvidia.clara.platform import jobs_pb2 as pb
from services.jobs import job_table, queue_table
from services.jobs.model import JobRecord, JobState, JobStatus, Priority
from services.jobs.queue import Ready, SharedQueue
from services.jobs.scheduler import Capacity, Demand, Grant
from shared import ids
from shared.db import Database
from shared.db.connection import Conflict
from tests.helpers import serve_process
from tests.jobs_flow import Platform, process_alive
from tests.store import query, target

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)

GPU_OPERATOR = """api-version: 0.4.0
name: gpu-once
operators:
- name: op
  container:
    image: busybox
    command: ["sh", "-c", "echo start $(date +%s.%N) $NVIDIA_VISIBLE_DEVICES >> /output/record; sleep {sleep};
      echo end $(date +%s.%N) >> /output/record"]
  requests: {{gpu: 1, cpu: 0, memory: 1}}
  output: [{{path: /output}}]
"""

REPLICA_ENV = {
    "CLARET_QUEUE": "database",
    "CLARET_NODE": "test-node",
    "CLARET_GPUS": "0,1",
    "CLARET_TAKEOVER_AFTER": "3",
    "CLARET_QUEUE_POLL": "0.1",
    "CLARET_STOP_GRACE": "1",
}


@contextmanager
def replicas(data: Path, *names: str) -> Iterator[dict[str, tuple[str, subprocess.Popen[bytes]]]]:
    """One `claret serve` jobs replica per name (with every service), sharing ``data``."""
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(serve_process(data, "--runtime", "sandbox", CLARET_REPLICA=name, **REPLICA_ENV))
            for name in names
        }


def intervals_overlap(spans: list[tuple[float, float]]) -> bool:
    spans = sorted(spans)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def owners(database: str | Path) -> dict[str, str]:
    return {
        str(job): str(owner) for job, owner in query(database, "SELECT id, owner FROM jobs WHERE owner IS NOT NULL")
    }


def running_on(database: str | Path, owner: str) -> int:
    ((count,),) = query(
        database,
        "SELECT count(*) FROM operators o JOIN jobs j ON j.id = o.job_id WHERE j.owner = ? AND o.status = ?",
        (owner, pb.JOB_OPERATOR_STATUS_RUNNING),
    )
    return int(count)  # type: ignore[call-overload]


async def test_two_replicas_run_each_gpu_operator_once_and_survive_one_killed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with replicas(data, "a", "b") as served:
        await twenty_gpu_operators_one_replica_killed(served, target(data))


async def twenty_gpu_operators_one_replica_killed(
    served: dict[str, tuple[str, subprocess.Popen[bytes]]], database: str | Path
) -> None:
    """Replicas "a" and "b" share two GPUs: 20 one-GPU jobs, half started through each, "a" SIGKILLed mid-run.
    Every job completes, each operator ran once, and no GPU ever had two holders at a time."""
    (address_a, process_a), (address_b, _) = served["a"], served["b"]
    async with grpc.aio.insecure_channel(address_a) as channel_a, grpc.aio.insecure_channel(address_b) as channel_b:
        a, b = Platform(channel_a, database), Platform(channel_b, database)
        pipeline = await a.pipeline(GPU_OPERATOR.format(sleep=0.6))
        jobs = [await (a if i % 2 else b).job(pipeline, name=f"job {i}") for i in range(20)]
        started = await asyncio.gather(*((a if i % 2 else b).start(job.job_id.value) for i, job in enumerate(jobs)))
        assert all(reply.header.code == 0 for reply in started), [r.header.messages for r in started]
        started_by_a = {job.job_id.value for i, job in enumerate(jobs) if i % 2}
        assert {job for job, owner in owners(database).items() if owner == "a"} == started_by_a

        # Kill replica a while one of its operators runs and some jobs are already done.
        for _ in range(400):
            done = [(await b.status(job.job_id.value)).state == pb.JOB_STATE_STOPPED for job in jobs]
            if sum(done) >= 2 and running_on(database, "a"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("replica a never ran an operator while jobs completed")
        process_a.send_signal(signal.SIGKILL)
        process_a.wait()

        finals = [await b.wait_stopped(job.job_id.value, within=60) for job in jobs]
        assert all(f.status == pb.JOB_STATUS_HEALTHY for f in finals), [list(f.messages) for f in finals]
        records = {
            job.job_id.value: (await b.download(job.payload_id.value, "/operators/op/record")).decode().split("\n")
            for job in jobs
        }

    # Replica b adopted a's unfinished jobs.
    assert any(owners(database)[job] == "b" for job in started_by_a)

    # Exactly once, by the operators' own records: one start and one end each, on one GPU.
    seen: dict[str, list[tuple[float, float]]] = {"0": [], "1": []}
    gpu_of: dict[str, str] = {}
    for job_id, lines in records.items():
        starts = [line.split() for line in lines if line.startswith("start")]
        ends = [line.split() for line in lines if line.startswith("end")]
        assert len(starts) == 1 and len(ends) == 1, (job_id, lines)
        (_, began, gpu), (_, ended) = starts[0], ends[0]
        seen[gpu].append((float(began), float(ended)))
        gpu_of[job_id] = gpu
    assert sum(len(spans) for spans in seen.values()) == 20
    assert not any(intervals_overlap(spans) for spans in seen.values()), seen

    # The ledger's history agrees: one grant per operator, the GPU it saw, never two holders at once.
    db = await Database.open(database)
    try:
        history = await db.read(queue_table.history)
        left = await db.read(lambda conn: conn.execute("SELECT count(*) FROM gpu_holds").fetchone()[0])
    finally:
        await db.close()
    # A job may have one extra, earlier grant: one that "a" took and was killed before it started the
    # operator (the operator ran once, as its record shows; the GPU was reserved meanwhile, so it is history).
    assert {hold.job_id for hold in history} == set(records)
    assert all(hold.released is not None for hold in history) and left == 0
    last_hold = {hold.job_id: hold.gpu_ids for hold in sorted(history, key=lambda hold: hold.granted)}
    assert last_hold == {job: (gpu,) for job, gpu in gpu_of.items()}
    assert len(history) - len(records) <= len(seen), history  # at most one per GPU "a" was granting when killed
    for gpu in ("0", "1"):
        spans = [(hold.granted, hold.released or 0.0) for hold in history if hold.gpu_ids == (gpu,)]
        assert not intervals_overlap(spans), spans


@asynccontextmanager
async def two_replicas(data: Path) -> AsyncIterator[tuple[Platform, Platform]]:
    """Replicas "a" and "b" on ``data``, and a client of each."""
    with replicas(data, "a", "b") as served:
        async with (
            grpc.aio.insecure_channel(served["a"][0]) as channel_a,
            grpc.aio.insecure_channel(served["b"][0]) as channel_b,
        ):
            yield Platform(channel_a, target(data)), Platform(channel_b, target(data))


async def test_a_cancel_reaches_the_replica_that_runs_the_job(tmp_path: Path) -> None:
    async with two_replicas(tmp_path / "data") as (a, b):
        job = await a.job(await a.pipeline(GPU_OPERATOR.format(sleep=60)))
        await a.start(job.job_id.value)
        await a.wait_operator(job.job_id.value, "op", pb.JOB_OPERATOR_STATUS_RUNNING)
        runtime_id = await a.wait_runtime_id(job.job_id.value, "op")

        reply = await b.jobs.Cancel(pb.JobsCancelRequest(job_id=common_pb2.Identifier(value=job.job_id.value)))
        assert reply.header.code == 0, reply.header.messages
        final = await b.wait_stopped(job.job_id.value, within=10)
        assert final.status == pb.JOB_STATUS_CANCELED, final.messages
        for _ in range(100):
            if not process_alive(runtime_id):
                break
            await asyncio.sleep(0.05)
        assert not process_alive(runtime_id)


SERVICE_READER = """api-version: 0.4.0
name: reader
operators:
- name: reader
  container:
    image: busybox
    command: ["sh", "-c", "python3 -c \\"import os, urllib.request; print(urllib.request.urlopen('http://'
      + os.environ['WEB_URI'] + '/passwd').read().decode())\\" > /output/out.txt"]
  requests: {cpu: 0, memory: 1}
  output: [{path: /output}]
  services:
  - name: web
    container:
      image: busybox
      command: ["python3", "-m", "http.server", "8000", "--bind", "127.0.0.1", "--directory", "/etc"]
    requests: {cpu: 0, memory: 1}
    connections:
      http: [{name: WEB_URI, port: 8000}]
"""


async def test_replicas_of_a_node_share_one_service_which_clara_stop_halts_leaving_jobs_running(
    tmp_path: Path,
) -> None:
    async with two_replicas(tmp_path / "data") as (a, b):
        for replica in (a, b):  # one started on a, the other on b: the same service serves both
            job = await replica.job(await replica.pipeline(SERVICE_READER))
            await replica.start(job.job_id.value)
            final = await replica.wait_stopped(job.job_id.value)
            assert final.status == pb.JOB_STATUS_HEALTHY, list(final.messages)
            assert b"operator:x:" in await replica.download(job.payload_id.value, "operators/reader/out.txt")
        [(owner, runtime_id)] = query(a.database, "SELECT owner, runtime_id FROM services")
        assert owner == "a" and process_alive(str(runtime_id))

        long = await b.job(await b.pipeline(GPU_OPERATOR.format(sleep=60)))
        await b.start(long.job_id.value)
        await b.wait_operator(long.job_id.value, "op", pb.JOB_OPERATOR_STATUS_RUNNING)
        reply = await clara_pb2_grpc.ClaraStub(b.channel).Stop(clara_pb2.ClaraStopRequest())  # b halts a's service
        assert reply.header.code == 0, reply.header.messages
        for _ in range(100):
            if not process_alive(str(runtime_id)) and not query(a.database, "SELECT id FROM services"):
                break
            await asyncio.sleep(0.05)
        assert not process_alive(str(runtime_id))
        assert query(a.database, "SELECT id FROM services") == []  # a cleaned up after it, ledger included
        assert query(a.database, "SELECT count(*) FROM ledger WHERE job_id = 'services' AND released IS NULL") == [(0,)]
        assert (await b.status(long.job_id.value)).state == pb.JOB_STATE_RUNNING  # Clara.Stop cancels no job
        await b.jobs.Cancel(pb.JobsCancelRequest(job_id=common_pb2.Identifier(value=long.job_id.value)))
        await b.wait_stopped(long.job_id.value)


async def test_a_killed_replicas_service_is_taken_over_with_its_ledger_hold(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with replicas(data, "a", "b") as served:
        async with (
            grpc.aio.insecure_channel(served["a"][0]) as channel_a,
            grpc.aio.insecure_channel(served["b"][0]) as channel_b,
        ):
            a, b = Platform(channel_a, target(data)), Platform(channel_b, target(data))
            job = await a.job(await a.pipeline(SERVICE_READER))
            await a.start(job.job_id.value)
            assert (await a.wait_stopped(job.job_id.value)).status == pb.JOB_STATUS_HEALTHY
            [(service_id, runtime_id)] = query(a.database, "SELECT id, runtime_id FROM services")
            served["a"][1].send_signal(signal.SIGKILL)
            served["a"][1].wait()

            held = "SELECT owner FROM ledger WHERE job_id = 'services' AND released IS NULL"
            for _ in range(200):  # b takes it over after CLARET_TAKEOVER_AFTER (3 s) of silence
                if query(b.database, "SELECT owner FROM services") == [("b",)] and query(b.database, held) == [("b",)]:
                    break
                await asyncio.sleep(0.05)
            assert query(b.database, "SELECT id, runtime_id, owner FROM services") == [(service_id, runtime_id, "b")]
            assert query(b.database, held) == [("b",)]
            job = await b.job(await b.pipeline(SERVICE_READER))
            await b.start(job.job_id.value)
            assert (await b.wait_stopped(job.job_id.value)).status == pb.JOB_STATUS_HEALTHY
            assert query(b.database, "SELECT id FROM services") == [(service_id,)]  # the same one served it

            await b.client.stop_platform()
            assert query(b.database, "SELECT id FROM services") == [] and query(b.database, held) == []
            assert not process_alive(str(runtime_id))


# -- the shared queue's decisions, on one SQLite file ---------------------------------------------------------


@pytest.fixture
async def db(tmp_path: Path) -> Database:
    database = await Database.open(target(tmp_path))
    yield database  # type: ignore[misc]
    await database.close()


def job_of(owner: str, priority: Priority = Priority.NORMAL) -> JobRecord:
    now = ids.now()
    return JobRecord(
        id=ids.new_id(), pipeline_id=ids.new_id(), payload_id=ids.new_id(), name="job", priority=int(priority),
        state=JobState.PENDING, status=JobStatus.HEALTHY, files=(), created=now, queued=now, owner=owner,
    )  # fmt: skip


async def started_job(db: Database, owner: str, priority: Priority = Priority.NORMAL) -> str:
    job = job_of(owner, priority)
    await db.write(lambda conn: job_table.insert(conn, job, []))
    await db.write(lambda conn: conn.execute("UPDATE jobs SET owner = ? WHERE id = ?", (owner, job.id)))
    return job.id


async def queues(db: Database, gpus: int = 1) -> tuple[SharedQueue, SharedQueue]:
    """Replicas "a" and "b", registered on node "n", each with its queue."""
    for replica in ("a", "b"):
        await db.write(lambda conn, replica=replica: queue_table.register(conn, replica, "n", 1e12))  # type: ignore[misc]
    capacity = Capacity(cpus=8, memory_mb=1024, gpu_ids=tuple(str(i) for i in range(gpus)))
    return (
        SharedQueue(db, capacity, node="n", replica="a"),
        SharedQueue(db, capacity, node="n", replica="b"),
    )


ONE_GPU = Demand(cpu=0, memory_mb=1, gpus=1)


async def take(queue: SharedQueue, db: Database, running: list[str] | None = None) -> list[Grant]:
    """The queue's grants, with every job of the database (or ``running``) carried on by the caller."""
    if running is None:
        running = await db.read(lambda conn: [row[0] for row in conn.execute("SELECT id FROM jobs")])
    return await queue.take(running)


async def test_a_grant_goes_to_the_replica_that_runs_the_job_whoever_decides(db: Database) -> None:
    queue_a, queue_b = await queues(db)
    job = await started_job(db, "a")
    await queue_a.submit([Ready((job, "op"), Priority.NORMAL, ONE_GPU)])
    assert await take(queue_b, db) == []  # b decides, but the job is a's
    grants = await take(queue_a, db)
    assert [(g.key, g.gpu_ids) for g in grants] == [((job, "op"), ("0",))]
    assert await take(queue_a, db) == []  # picked once


async def test_immediate_is_strict_across_replicas(db: Database) -> None:
    queue_a, queue_b = await queues(db)
    holder, lower, immediate = (
        await started_job(db, "a"),
        await started_job(db, "a", Priority.LOWER),
        await started_job(db, "b", Priority.IMMEDIATE),
    )
    await queue_a.submit([Ready((holder, "op"), Priority.NORMAL, ONE_GPU)])
    assert len(await take(queue_a, db)) == 1  # the only GPU is held
    await queue_a.submit([Ready((lower, "op"), Priority.LOWER, ONE_GPU)])
    await queue_b.submit([Ready((immediate, "op"), Priority.IMMEDIATE, ONE_GPU)])
    await queue_a.release((holder, "op"))
    assert await take(queue_a, db) == []  # a decides: the GPU goes to b's IMMEDIATE operator, not a's own
    assert [g.key for g in await take(queue_b, db)] == [(immediate, "op")]


async def test_concurrent_rounds_never_grant_a_gpu_twice(db: Database) -> None:
    queue_a, queue_b = await queues(db, gpus=2)
    jobs = [await started_job(db, "a" if i % 2 else "b") for i in range(12)]
    for i, job in enumerate(jobs):
        await (queue_a if i % 2 else queue_b).submit([Ready((job, "op"), Priority.NORMAL, ONE_GPU)])
    held: dict[str, tuple[str, str]] = {}
    done = 0
    while done < len(jobs):
        for queue in (queue_a, queue_b):
            for grant in await asyncio.gather(take(queue, db), take(queue, db)):
                for g in grant:
                    (gpu,) = g.gpu_ids
                    assert gpu not in held, f"GPU {gpu} granted to {g.key} while {held[gpu]} holds it"
                    held[gpu] = g.key  # type: ignore[assignment]
        for gpu, key in list(held.items()):
            await (queue_a if key[0] in jobs[1::2] else queue_b).release(key)
            del held[gpu]
            done += 1
    assert await db.read(lambda conn: conn.execute("SELECT count(*) FROM ledger").fetchone()[0]) == 12


async def test_the_database_refuses_a_second_holder_of_a_gpu(db: Database) -> None:
    first, second = await started_job(db, "a"), await started_job(db, "b")
    await db.write(lambda conn: queue_table.grant(conn, "n", (first, "op"), 0, 1, ["0"], 1.0, "a"))
    with pytest.raises(Conflict):
        await db.write(lambda conn: queue_table.grant(conn, "n", (second, "op"), 0, 1, ["0"], 2.0, "b"))
    assert await db.read(lambda conn: [h.job_id for h in queue_table.history(conn)]) == [first]


async def test_takeover_hands_out_again_the_grants_of_operators_that_never_started(db: Database) -> None:
    queue_a, queue_b = await queues(db, gpus=2)
    await db.write(lambda conn: conn.execute("UPDATE replicas SET heartbeat = 100 WHERE id = 'a'"))
    never_started, running = await started_job(db, "a"), await started_job(db, "a")
    await queue_a.submit([Ready((job, "op"), Priority.NORMAL, ONE_GPU) for job in (never_started, running)])
    assert len(await take(queue_a, db)) == 2  # a picked both, then died before starting the first
    await db.write(
        lambda conn: conn.execute(
            "INSERT INTO operators (job_id, name, position, status, created)"
            " VALUES (?, 'op', 0, ?, 0), (?, 'op', 0, ?, 0)",
            (never_started, pb.JOB_OPERATOR_STATUS_PENDING, running, pb.JOB_OPERATOR_STATUS_RUNNING),
        )
    )
    adopted = await db.write(lambda conn: queue_table.take_over(conn, "b", silent_since=1000.0))
    assert sorted(adopted) == sorted([never_started, running])
    assert [g.key for g in await take(queue_b, db)] == [(never_started, "op")]  # the running one is re-attached
    assert await db.write(lambda conn: queue_table.heartbeat(conn, "a", 2000.0)) is False  # a learns it was taken over


async def test_a_grant_waits_while_its_job_is_adopted_and_is_given_back_when_the_job_stopped(db: Database) -> None:
    (queue_a, _) = await queues(db, gpus=2)
    adopting, stopped = await started_job(db, "a"), await started_job(db, "a")
    await queue_a.submit([Ready((job, "op"), Priority.NORMAL, ONE_GPU) for job in (adopting, stopped)])
    await db.write(lambda conn: job_table.finish(conn, stopped, JobStatus.CANCELED, [], ids.now()))
    assert await take(queue_a, db, running=[]) == []  # neither job is carried on here yet
    assert await take(queue_a, db, running=[adopting]) != []  # the adopted job's grant was kept for it
    history = await db.read(queue_table.history)
    assert {(h.job_id, h.released is None) for h in history} == {(adopting, True), (stopped, False)}


async def add_operator(db: Database, job_id: str, status: int) -> None:
    await db.write(
        lambda conn: conn.execute(
            "INSERT INTO operators (job_id, name, position, status, created) VALUES (?, 'op', 0, ?, 0)"
            " ON CONFLICT (job_id, name) DO UPDATE SET status = excluded.status",
            (job_id, status),
        )
    )


async def test_a_restarted_replica_takes_again_the_grants_it_took_but_never_started(db: Database) -> None:
    queue_a, _ = await queues(db)
    job = await started_job(db, "a")
    await add_operator(db, job, pb.JOB_OPERATOR_STATUS_PENDING)
    await queue_a.submit([Ready((job, "op"), Priority.NORMAL, ONE_GPU)])
    assert len(await take(queue_a, db)) == 1  # taken, then the process died before starting it
    assert await take(queue_a, db) == []
    await queue_a.reclaim()  # the same replica, started again
    assert [g.key for g in await take(queue_a, db)] == [(job, "op")]


async def test_a_replica_taken_over_cannot_give_back_its_successors_grant(db: Database) -> None:
    queue_a, queue_b = await queues(db)
    job = await started_job(db, "a")
    await add_operator(db, job, pb.JOB_OPERATOR_STATUS_RUNNING)
    await queue_a.submit([Ready((job, "op"), Priority.NORMAL, ONE_GPU)])
    assert len(await take(queue_a, db)) == 1
    await db.write(lambda conn: conn.execute("UPDATE replicas SET heartbeat = 100 WHERE id = 'a'"))
    assert await db.write(lambda conn: queue_table.take_over(conn, "b", silent_since=1000.0)) == [job]
    await queue_a.release((job, "op"))  # a stalled past its takeover, and comes back
    assert [h.owner for h in await db.read(lambda conn: queue_table.held(conn, "n"))] == ["b"]
    await queue_a.withdraw([(job, "op")])
    await queue_b.release((job, "op"))
    assert await db.read(lambda conn: queue_table.held(conn, "n")) == []


async def test_the_sweep_gives_back_grants_of_operators_that_ended(db: Database) -> None:
    queue_a, _ = await queues(db)
    job = await started_job(db, "a")
    await add_operator(db, job, pb.JOB_OPERATOR_STATUS_RUNNING)
    await queue_a.submit([Ready((job, "op"), Priority.NORMAL, ONE_GPU)])
    assert len(await take(queue_a, db)) == 1
    await db.write(lambda conn: queue_table.sweep(conn, 5.0))
    assert len(await db.read(lambda conn: queue_table.held(conn, "n"))) == 1  # still running: still held
    await add_operator(db, job, pb.JOB_OPERATOR_STATUS_COMPLETED)  # it ended; its replica died before releasing
    await db.write(lambda conn: queue_table.sweep(conn, 6.0))
    assert await db.read(lambda conn: queue_table.held(conn, "n")) == []


async def test_a_node_grants_only_operators_of_jobs_run_on_it(db: Database) -> None:
    queue_a, _ = await queues(db)
    await db.write(lambda conn: queue_table.register(conn, "elsewhere", "m", 1e12))
    theirs, ours = await started_job(db, "elsewhere"), await started_job(db, "a")
    await queue_a.submit([Ready((job, "op"), Priority.NORMAL, ONE_GPU) for job in (theirs, ours)])
    assert [g.key for g in await take(queue_a, db)] == [(ours, "op")]
    assert [h.job_id for h in await db.read(lambda conn: queue_table.held(conn, "n"))] == [ours]
