"""The queue, ledger and replica tables that jobs replicas share (migration 002).

Plain functions over a ``Connection``, run through ``Database``; what they decide is in
``services/jobs/shared_queue.py``. A grant is a ledger row; a held GPU is also a ``gpu_holds`` row, whose
primary key refuses a second holder of the same GPU on the same node.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from shared.db.connection import Connection, Row, returned, row_locks

Key = tuple[str, str]
"""(job id, operator name)."""


@dataclass(frozen=True, slots=True)
class Queued:
    """A ready operator waiting in the shared queue."""

    job_id: str
    operator: str
    priority: int
    cpu: int
    memory_mb: int
    gpus: int
    since: float


@dataclass(frozen=True, slots=True)
class Hold:
    """A ledger row: resources of ``node`` granted to one operator, run by replica ``owner``."""

    id: int
    node: str
    job_id: str
    operator: str
    owner: str
    cpu: int
    memory_mb: int
    gpu_ids: tuple[str, ...]
    granted: float
    released: float | None


def _hold(row: Row) -> Hold:
    return Hold(
        id=row["id"],
        node=row["node"],
        job_id=row["job_id"],
        operator=row["operator"],
        owner=row["owner"],
        cpu=row["cpu"],
        memory_mb=row["memory_mb"],
        gpu_ids=tuple(json.loads(row["gpu_ids"])),
        granted=row["granted"],
        released=row["released"],
    )


# -- queue -------------------------------------------------------------------------------------------------


def enqueue(conn: Connection, entries: Iterable[Queued]) -> None:
    """Queue ready operators; one already waiting or holding a grant is left as it is (a replica taking a
    job over submits what it finds ready, and some of it may be granted already)."""
    for e in entries:
        if holder(conn, (e.job_id, e.operator)) is None:
            conn.execute(
                "INSERT INTO queue (job_id, operator, priority, cpu, memory_mb, gpus, since)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (e.job_id, e.operator, e.priority, e.cpu, e.memory_mb, e.gpus, e.since),
            )


def dequeue(conn: Connection, keys: Iterable[Key], owner: str) -> None:
    """Withdraw waiting operators of jobs ``owner`` runs (not of one another replica took over meanwhile)."""
    conn.executemany(
        "DELETE FROM queue WHERE job_id = ? AND operator = ? AND job_id IN (SELECT id FROM jobs WHERE owner = ?)",
        [(*key, owner) for key in keys],
    )


def waiting(conn: Connection, node: str) -> list[Queued]:
    """The waiting operators of jobs run by replicas of ``node``, in submission order (a node grants its own
    resources to operators that run on it; a job whose replica is gone waits for its takeover)."""
    rows = conn.execute(
        "SELECT q.job_id, q.operator, q.priority, q.cpu, q.memory_mb, q.gpus, q.since FROM queue q"
        " JOIN jobs j ON j.id = q.job_id JOIN replicas r ON r.id = j.owner WHERE r.node = ? ORDER BY q.seq",
        (node,),
    )
    return [Queued(*row) for row in rows]


# -- ledger ------------------------------------------------------------------------------------------------


def held(conn: Connection, node: str) -> list[Hold]:
    return [_hold(row) for row in conn.execute("SELECT * FROM ledger WHERE node = ? AND released IS NULL", (node,))]


def holder(conn: Connection, key: Key) -> Hold | None:
    row = conn.execute("SELECT * FROM ledger WHERE job_id = ? AND operator = ? AND released IS NULL", key).fetchone()
    return None if row is None else _hold(row)


def history(conn: Connection) -> list[Hold]:
    """Every grant ever made, held or released, oldest first."""
    return [_hold(row) for row in conn.execute("SELECT * FROM ledger ORDER BY id")]


def grant(
    conn: Connection,
    node: str,
    key: Key,
    cpu: int,
    memory_mb: int,
    gpu_ids: Sequence[str],
    at: float,
    owner: str,
    *,
    picked: bool = False,
) -> str:
    """Record a grant to the replica that runs the job (``owner`` when the job has none recorded); returns
    the replica it went to.

    The database refuses (:class:`~shared.db.connection.Conflict`) when the operator or one of the GPUs is
    already held: the transaction then rolls back and nothing is granted."""
    job = conn.execute("SELECT owner FROM jobs WHERE id = ?", (key[0],)).fetchone()
    owner = (job and job[0]) or owner
    (ledger_id,) = returned(
        conn.execute(
            "INSERT INTO ledger (node, job_id, operator, owner, cpu, memory_mb, gpu_ids, granted, picked)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (node, *key, owner, cpu, memory_mb, json.dumps(list(gpu_ids)), at, int(picked)),
        )
    )
    conn.executemany(
        "INSERT INTO gpu_holds (node, gpu_id, ledger_id) VALUES (?, ?, ?)", [(node, gpu, ledger_id) for gpu in gpu_ids]
    )
    conn.execute("DELETE FROM queue WHERE job_id = ? AND operator = ?", key)
    return owner


def release(conn: Connection, key: Key, at: float, owner: str) -> None:
    """Give back what the operator holds for ``owner`` (nothing happens when it holds nothing, or the grant
    went to another replica with a takeover)."""
    held = "job_id = ? AND operator = ? AND owner = ? AND released IS NULL"
    conn.execute(f"DELETE FROM gpu_holds WHERE ledger_id IN (SELECT id FROM ledger WHERE {held})", (*key, owner))
    conn.execute(f"UPDATE ledger SET released = ? WHERE {held}", (at, *key, owner))


def sweep(conn: Connection, at: float) -> None:
    """Give back the grants of operators that ended, whichever replica failed to (one that died between an
    operator's end and its release)."""
    ended = (
        "SELECT l.id FROM ledger l JOIN operators o ON o.job_id = l.job_id AND o.name = l.operator"
        " WHERE l.released IS NULL AND o.status IN (3, 4)"  # COMPLETED, FAULTED
    )
    conn.execute(f"DELETE FROM gpu_holds WHERE ledger_id IN ({ended})")
    conn.execute(f"UPDATE ledger SET released = ? WHERE id IN ({ended})", (at,))


def reclaim(conn: Connection, owner: str) -> None:
    """At ``owner``'s start: grants it picked but whose operator never started are to be picked again."""
    conn.execute(
        "UPDATE ledger SET picked = 0 WHERE owner = ? AND picked = 1 AND released IS NULL AND EXISTS"
        " (SELECT 1 FROM operators o WHERE o.job_id = ledger.job_id AND o.name = ledger.operator AND o.status = 1)",
        (owner,),
    )


def pick(conn: Connection, owner: str) -> list[Hold]:
    """The grants made to ``owner`` that it has not taken yet; they are marked taken."""
    rows = conn.execute(
        "UPDATE ledger SET picked = 1 WHERE id IN (SELECT id FROM ledger"
        f" WHERE owner = ? AND picked = 0 AND released IS NULL{row_locks(conn)}) RETURNING *",
        (owner,),
    ).fetchall()
    return sorted((_hold(row) for row in rows), key=lambda hold: hold.id)


def unpick_or_release(conn: Connection, ledger_ids: Sequence[int], at: float) -> None:
    """Grants picked too early: released when their job stopped, else left for their owner's next pick."""
    for ledger_id in ledger_ids:
        stopped = conn.execute(
            "SELECT j.stopped IS NOT NULL FROM ledger l JOIN jobs j ON j.id = l.job_id WHERE l.id = ?", (ledger_id,)
        ).fetchone()
        if stopped is None or stopped[0]:
            conn.execute("DELETE FROM gpu_holds WHERE ledger_id = ?", (ledger_id,))
            conn.execute("UPDATE ledger SET released = ? WHERE id = ?", (at, ledger_id))
        else:
            conn.execute("UPDATE ledger SET picked = 0 WHERE id = ?", (ledger_id,))


def passes(conn: Connection, node: str) -> dict[int, int]:
    rows = conn.execute("SELECT priority, pass FROM stride_passes WHERE node = ?", (node,))
    return {row[0]: row[1] for row in rows}


def save_passes(conn: Connection, node: str, values: Mapping[int, int]) -> None:
    conn.executemany(
        "INSERT INTO stride_passes (node, priority, pass) VALUES (?, ?, ?)"
        " ON CONFLICT (node, priority) DO UPDATE SET pass = excluded.pass",
        [(node, priority, value) for priority, value in values.items()],
    )


# -- replicas ----------------------------------------------------------------------------------------------


def register(conn: Connection, replica: str, node: str, at: float) -> None:
    conn.execute(
        "INSERT INTO replicas (id, node, heartbeat, started) VALUES (?, ?, ?, ?) ON CONFLICT (id)"
        " DO UPDATE SET node = excluded.node, heartbeat = excluded.heartbeat, started = excluded.started",
        (replica, node, at, at),
    )


def heartbeat(conn: Connection, replica: str, at: float) -> bool:
    """False when the replica's row is gone: another replica declared it dead and took its jobs."""
    return conn.execute("UPDATE replicas SET heartbeat = ? WHERE id = ?", (at, replica)).rowcount == 1


def mark_gone(conn: Connection, replica: str) -> None:
    """A replica shutting down: others take its jobs over at their next look instead of after the silence."""
    conn.execute("UPDATE replicas SET heartbeat = 0 WHERE id = ?", (replica,))


def take_over(conn: Connection, replica: str, silent_since: float) -> list[str]:
    """Adopt the started jobs of replicas silent since ``silent_since``, and of none that is registered (a
    single jobs process ran them): they and their grants become ``replica``'s, and the silent replicas' rows
    go, so one that comes back learns it was taken over. Grants of operators that never started are handed
    out again. Returns the adopted job ids, oldest first."""
    conn.execute("DELETE FROM replicas WHERE heartbeat < ? AND id != ?", (silent_since, replica))
    orphaned = "(owner IS NULL OR (owner <> ? AND owner NOT IN (SELECT id FROM replicas)))"
    adopted = conn.execute(
        f"UPDATE jobs SET owner = ? WHERE queued IS NOT NULL AND stopped IS NULL AND {orphaned} RETURNING id, queued",
        (replica, replica),
    ).fetchall()
    conn.execute(
        "UPDATE ledger SET owner = ?, picked = CASE WHEN EXISTS (SELECT 1 FROM operators o"
        " WHERE o.job_id = ledger.job_id AND o.name = ledger.operator AND o.status = 1) THEN 0 ELSE picked END"
        f" WHERE released IS NULL AND {orphaned}",  # status 1: PENDING, never started
        (replica, replica),
    )
    return [row[0] for row in sorted(adopted, key=lambda row: (row[1], row[0]))]


def request_cancel(conn: Connection, job_id: str, message: str) -> None:
    conn.execute("UPDATE jobs SET cancel_request = ? WHERE id = ? AND stopped IS NULL", (message, job_id))


def cancel_requests(conn: Connection, owner: str) -> list[tuple[str, str]]:
    """(job id, message) of the Cancels other replicas passed on for jobs ``owner`` runs."""
    rows = conn.execute(
        "SELECT id, cancel_request FROM jobs WHERE owner = ? AND stopped IS NULL AND cancel_request IS NOT NULL",
        (owner,),
    )
    return [(row[0], row[1]) for row in rows]
