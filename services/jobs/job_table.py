"""The jobs and operators tables: plain functions over a ``Connection`` (run them through ``Database``) that
store and read the records of :mod:`services.jobs.model`."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from services.jobs.model import (
    JobFilter,
    JobRecord,
    JobState,
    JobStatus,
    JobView,
    OperatorRecord,
    OperatorStatus,
    Priority,
)
from services.jobs.runtimes.base import SERVICES_JOB
from shared.db.connection import Connection, Row
from shared.pipeline_definition import DefinitionFile


def _files_json(files: Sequence[DefinitionFile]) -> str:
    return json.dumps([[f.path, f.content] for f in files])


def _loads(text: str) -> Any:
    """A JSON column's value; the empty ones most rows hold are answered without the parser."""
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return json.loads(text)


def _job(row: Row, *, files: bool) -> JobRecord:
    return JobRecord(
        id=row["id"],
        pipeline_id=row["pipeline_id"],
        payload_id=row["payload_id"],
        name=row["name"],
        priority=Priority.of(row["priority"]),
        state=JobState(row["state"]),
        status=JobStatus(row["status"]),
        files=tuple(DefinitionFile(path=p, content=c) for p, c in json.loads(row["files"])) if files else (),
        created=row["created"],
        variables=_loads(row["variables"]),
        metadata=_loads(row["metadata"]),
        messages=tuple(_loads(row["messages"])),
        timeout=row["timeout"],
        queued=row["queued"],
        started=row["started"],
        stopped=row["stopped"],
        owner=row["owner"],
    )


def _operator(row: Row, prefix: str = "") -> OperatorRecord:
    """The operator of a row of the operators table, or of columns named ``prefix`` + its column (a join)."""
    return OperatorRecord(
        job_id=row[prefix + "job_id"],
        name=row[prefix + "name"],
        status=OperatorStatus(row[prefix + "status"]),
        upstream=tuple(_loads(row[prefix + "upstream"])),
        created=row[prefix + "created"],
        started=row[prefix + "started"],
        stopped=row[prefix + "stopped"],
        exit_code=row[prefix + "exit_code"],
        runtime_id=row[prefix + "runtime_id"],
        gpu_ids=tuple(_loads(row[prefix + "gpu_ids"])),
        node=row[prefix + "node"],
    )


def insert(conn: Connection, job: JobRecord, operators: Iterable[OperatorRecord]) -> None:
    conn.execute(
        "INSERT INTO jobs (id, pipeline_id, payload_id, name, priority, state, status, files, variables, metadata,"
        " messages, timeout, created, queued, started, stopped)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            job.id,
            job.pipeline_id,
            job.payload_id,
            job.name,
            int(job.priority),
            int(job.state),
            int(job.status),
            _files_json(job.files),
            json.dumps(job.variables),
            json.dumps(job.metadata),
            json.dumps(job.messages),
            job.timeout,
            job.created,
            job.queued,
            job.started,
            job.stopped,
        ),
    )
    conn.executemany(
        "INSERT INTO operators (job_id, name, position, status, upstream, created) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (op.job_id, op.name, position, int(op.status), json.dumps(op.upstream), op.created)
            for position, op in enumerate(operators)
        ],
    )


JOB_SUMMARY = (
    "id",
    "pipeline_id",
    "payload_id",
    "name",
    "priority",
    "state",
    "status",
    "variables",
    "metadata",
    "messages",
    "timeout",
    "created",
    "queued",
    "started",
    "stopped",
    "owner",
)
"""Every column of a job but its definition files, which Status and List never show and which can be large."""
SUMMARY_COLUMNS = ", ".join(JOB_SUMMARY)


def get(conn: Connection, job_id: str, *, files: bool = True) -> JobRecord | None:
    """One job; with ``files=False`` its definition is left out (``JobRecord.files`` is empty)."""
    row = conn.execute(f"SELECT {'*' if files else SUMMARY_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else _job(row, files=files)


OPERATOR_COLUMNS = (
    "job_id",
    "name",
    "status",
    "upstream",
    "created",
    "started",
    "stopped",
    "exit_code",
    "runtime_id",
    "gpu_ids",
    "node",
)
_VIEW_SQL = (
    f"SELECT {', '.join(f'j.{c}' for c in JOB_SUMMARY)},"
    f" {', '.join(f'o.{c} AS op_{c}' for c in OPERATOR_COLUMNS)}"
    " FROM jobs j LEFT JOIN operators o ON o.job_id = j.id WHERE j.id = ? ORDER BY o.position"
)


def view(conn: Connection, job_id: str) -> JobView | None:
    """The job (without its definition) and its operators in one statement: Status reads this, and is polled."""
    rows = conn.execute(_VIEW_SQL, (job_id,)).fetchall()
    if not rows:
        return None
    operators = [_operator(row, "op_") for row in rows if row["op_name"] is not None]
    return JobView(job=_job(rows[0], files=False), operators=operators)


def operators(conn: Connection, job_id: str) -> list[OperatorRecord]:
    rows = conn.execute("SELECT * FROM operators WHERE job_id = ? ORDER BY position", (job_id,))
    return [_operator(row) for row in rows]


def list_jobs(conn: Connection, where: JobFilter) -> list[JobRecord]:
    clauses, params = _filter_sql(where)
    where_sql = " WHERE " + " AND ".join(clauses) if clauses else ""
    sql = f"SELECT {SUMMARY_COLUMNS} FROM jobs{where_sql} ORDER BY created, id"
    return [_job(row, files=False) for row in conn.execute(sql, params)]


def _filter_sql(where: JobFilter) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    for column, values in (("state", where.states), ("status", where.statuses), ("pipeline_id", where.pipeline_ids)):
        if values:
            clauses.append(f"{column} IN ({_marks(values)})")
            params.extend(values)
    if where.created_after is not None:
        clauses.append("created > ?")
        params.append(where.created_after)
    if where.completed_before is not None:
        clauses.append("stopped IS NOT NULL AND stopped < ?")
        params.append(where.completed_before)
    return clauses, params


def in_flight(conn: Connection) -> list[JobRecord]:
    """Started jobs that have not stopped."""
    rows = conn.execute("SELECT * FROM jobs WHERE queued IS NOT NULL AND stopped IS NULL ORDER BY queued, id")
    return [_job(row, files=True) for row in rows]


def adopt_in_flight(conn: Connection, owner: str, *, every: bool) -> list[str]:
    """Make ``owner`` the replica of the in-flight jobs it must carry on after a restart: every one (a single
    jobs process), or those it owned already and those of no replica. Returns their ids, oldest first."""
    mine = "" if every else " AND (owner = ? OR owner IS NULL)"
    rows = conn.execute(
        f"UPDATE jobs SET owner = ? WHERE queued IS NOT NULL AND stopped IS NULL{mine} RETURNING id, queued",
        (owner,) if every else (owner, owner),
    ).fetchall()
    return [row[0] for row in sorted(rows, key=lambda row: (row[1], row[0]))]


def mark_queued(
    conn: Connection, job_id: str, variables: dict[str, str], timeout: float, at: float, owner: str
) -> bool:
    """Start: a job never started -> queued, run by replica ``owner`` (PENDING, with no ``started`` time, until
    its first operator runs). False if not startable."""
    cursor = conn.execute(
        "UPDATE jobs SET queued = ?, variables = ?, timeout = ?, owner = ?"
        " WHERE id = ? AND queued IS NULL AND stopped IS NULL",
        (at, json.dumps(variables), timeout, owner, job_id),
    )
    return cursor.rowcount == 1


def operator_starting(
    conn: Connection, job_id: str, name: str, gpu_ids: Sequence[str], at: float, owner: str, node: str = ""
) -> bool:
    """Recorded before the runtime is asked, so a crash in between leaves a RUNNING operator to look for
    (by container name or sandbox command line) rather than one that would be started a second time.
    False, and nothing recorded, when the job stopped or another replica than ``owner`` runs it now."""
    cursor = conn.execute(
        "UPDATE operators SET status = ?, started = ?, runtime_id = NULL, gpu_ids = ?, node = ?"
        " WHERE job_id = ? AND name = ?"
        " AND EXISTS (SELECT 1 FROM jobs WHERE id = ? AND stopped IS NULL AND (owner IS NULL OR owner = ?))",
        (int(OperatorStatus.RUNNING), at, json.dumps(list(gpu_ids)), node, job_id, name, job_id, owner),
    )
    if cursor.rowcount == 0:
        return False
    conn.execute(  # the job's first operator: the job starts now
        "UPDATE jobs SET state = ?, started = ? WHERE id = ? AND state = ?",
        (int(JobState.RUNNING), at, job_id, int(JobState.PENDING)),
    )
    return True


def operator_not_started(conn: Connection, job_id: str, name: str) -> None:
    """Back to PENDING: the runtime proved the operator never ran, so it will be started afresh."""
    conn.execute(
        "UPDATE operators SET status = ?, started = NULL, runtime_id = NULL, gpu_ids = '[]', node = ''"
        " WHERE job_id = ? AND name = ?",
        (int(OperatorStatus.PENDING), job_id, name),
    )


def started_times(conn: Connection, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """When each of these operators (job id, name) and pipeline services (``services``, id) started."""
    found: dict[tuple[str, str], float] = {}
    jobs = sorted({job_id for job_id, _ in keys if job_id != SERVICES_JOB})
    services = sorted(name for job_id, name in keys if job_id == SERVICES_JOB)
    if jobs:
        rows = conn.execute(
            f"SELECT job_id, name, started FROM operators WHERE started IS NOT NULL AND job_id IN ({_marks(jobs)})",
            jobs,
        )
        found.update(((row["job_id"], row["name"]), row["started"]) for row in rows)
    if services:
        rows = conn.execute(f"SELECT id, started FROM services WHERE id IN ({_marks(services)})", services)
        found.update(((SERVICES_JOB, row["id"]), row["started"]) for row in rows)
    return {key: at for key, at in found.items() if key in keys}


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def operator_runtime_id(conn: Connection, job_id: str, name: str, runtime_id: str) -> None:
    conn.execute("UPDATE operators SET runtime_id = ? WHERE job_id = ? AND name = ?", (runtime_id, job_id, name))


def operator_finished(
    conn: Connection,
    job_id: str,
    name: str,
    status: OperatorStatus,
    exit_code: int | None,
    at: float,
    runtime_id: str | None = None,
) -> None:
    """The operator's end, with its runtime id when given. One its job's end already recorded (stopped with it)
    only gains its exit code."""
    conn.execute(
        "UPDATE operators SET status = CASE WHEN stopped IS NULL THEN ? ELSE status END, exit_code = ?,"
        " stopped = COALESCE(stopped, ?), runtime_id = COALESCE(?, runtime_id) WHERE job_id = ? AND name = ?",
        (int(status), exit_code, at, runtime_id, job_id, name),
    )


def finish(conn: Connection, job_id: str, status: JobStatus, messages: Sequence[str], at: float) -> bool:
    """End a job once: STOPPED with ``status``; messages are appended. Its operators still running end with it
    (FAULTED: stopped before they completed), so no one ever sees a stopped job with a running operator.
    False if it had already stopped."""
    row = conn.execute(
        "UPDATE jobs SET state = ?, status = ?, stopped = ? WHERE id = ? AND stopped IS NULL RETURNING messages",
        (int(JobState.STOPPED), int(status), at, job_id),
    ).fetchone()
    if row is None:
        return False
    if messages:  # a job that ends well has none: one statement less
        conn.execute("UPDATE jobs SET messages = ? WHERE id = ?", (_appended(row[0], messages), job_id))
    conn.execute(
        "UPDATE operators SET status = ?, stopped = ? WHERE job_id = ? AND status = ?",
        (int(OperatorStatus.FAULTED), at, job_id, int(OperatorStatus.RUNNING)),
    )
    return True


def add_messages(conn: Connection, job_id: str, messages: Sequence[str]) -> None:
    """Append to a job's messages without ending it (a log that was cut, a warning)."""
    row = conn.execute("SELECT messages FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is not None:
        conn.execute("UPDATE jobs SET messages = ? WHERE id = ?", (_appended(row[0], messages), job_id))


def _appended(stored: str, messages: Sequence[str]) -> str:
    """A job's stored messages (JSON) with ``messages`` after them."""
    return json.dumps([*json.loads(stored), *messages])


def running_operators(conn: Connection) -> set[tuple[str, str]]:
    """(job id, operator name) of every operator recorded as running in a job still in flight, whichever
    replica started it (one of a stopped job is an orphan, left by a shutdown during its stop)."""
    rows = conn.execute(
        "SELECT o.job_id, o.name FROM operators o JOIN jobs j ON j.id = o.job_id"
        " WHERE o.status = ? AND j.stopped IS NULL",
        (int(OperatorStatus.RUNNING),),
    )
    return {(row[0], row[1]) for row in rows}


def counts(conn: Connection) -> tuple[list[tuple[str, str, int]], list[tuple[str, int]]]:
    """(state, status, jobs) and, for started jobs in flight, (operator status, operators), by lower-case name:
    for the metrics."""
    jobs = conn.execute("SELECT state, status, count(*) FROM jobs GROUP BY state, status").fetchall()
    operators = conn.execute(
        "SELECT o.status, count(*) FROM operators o JOIN jobs j ON j.id = o.job_id"
        " WHERE j.queued IS NOT NULL AND j.stopped IS NULL GROUP BY o.status"
    ).fetchall()
    return (
        [(JobState(r[0]).name.lower(), JobStatus(r[1]).name.lower(), r[2]) for r in jobs],
        [(OperatorStatus(r[0]).name.lower(), r[1]) for r in operators],
    )
