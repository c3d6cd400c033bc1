"""The DICOM service's tables (migration 006): associations, the jobs made of them, and their exports.

Plain functions over a ``Connection``; what they mean is in the modules that call them (``scp.py`` and
``service.py`` record associations, ``submit.py`` jobs, ``exporter.py`` exports).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.db.connection import Connection, Row

Outcome = Literal["released", "aborted", "rejected"]
ExportState = Literal["pending", "sent", "failed"]


@dataclass(frozen=True, slots=True)
class AssociationRow:
    id: str
    called: str
    calling: str
    address: str
    outcome: Outcome
    reason: str
    instances: int
    bytes: int
    started: float
    ended: float


@dataclass(frozen=True, slots=True)
class DicomJob:
    job_id: str
    payload_id: str
    called: str


@dataclass(frozen=True, slots=True)
class ExportRow:
    job_id: str
    destination: str
    state: ExportState
    files: int
    attempts: int
    error: str
    next_try: float
    updated: float
    payload_id: str = ""
    called: str = ""


def add_association(conn: Connection, row: AssociationRow) -> None:
    conn.execute(
        "INSERT INTO dicom_associations (id, called, calling, address, outcome, reason, instances, bytes, started,"
        " ended) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.id,
            row.called,
            row.calling,
            row.address,
            row.outcome,
            row.reason,
            row.instances,
            row.bytes,
            row.started,
            row.ended,
        ),
    )


def recent_associations(conn: Connection, limit: int) -> list[AssociationRow]:
    rows = conn.execute("SELECT * FROM dicom_associations ORDER BY ended DESC, id LIMIT ?", (limit,))
    return [AssociationRow(**_fields(row)) for row in rows]  # type: ignore[arg-type]  # the table's columns


def forget_associations_before(conn: Connection, before: float) -> int:
    return conn.execute("DELETE FROM dicom_associations WHERE ended < ?", (before,)).rowcount


def add_job(conn: Connection, job: DicomJob, at: float) -> None:
    conn.execute(
        "INSERT INTO dicom_jobs (job_id, payload_id, called, state, created) VALUES (?, ?, ?, 'running', ?)",
        (job.job_id, job.payload_id, job.called, at),
    )


def running_jobs(conn: Connection) -> list[DicomJob]:
    """The jobs whose end the exporter still waits for, oldest first."""
    rows = conn.execute(
        "SELECT job_id, payload_id, called FROM dicom_jobs WHERE state = 'running' ORDER BY created, job_id"
    )
    return [DicomJob(row["job_id"], row["payload_id"], row["called"]) for row in rows]


def end_job(conn: Connection, job_id: str, destinations: dict[str, int], at: float) -> None:
    """The job ended: pending exports of its ``files`` (count by destination name) begin, in one transaction."""
    conn.execute("UPDATE dicom_jobs SET state = 'ended' WHERE job_id = ?", (job_id,))
    conn.executemany(
        "INSERT INTO dicom_exports (job_id, destination, state, files, next_try, updated)"
        " VALUES (?, ?, 'pending', ?, ?, ?) ON CONFLICT (job_id, destination) DO NOTHING",
        [(job_id, name, files, at, at) for name, files in destinations.items()],
    )


def due_exports(conn: Connection, now: float) -> list[ExportRow]:
    rows = conn.execute(
        "SELECT e.*, j.payload_id, j.called FROM dicom_exports e JOIN dicom_jobs j ON j.job_id = e.job_id"
        " WHERE e.state = 'pending' AND e.next_try <= ? ORDER BY e.next_try, e.job_id",
        (now,),
    )
    return [ExportRow(**_fields(row)) for row in rows]  # type: ignore[arg-type]  # the table's columns


def next_export_due(conn: Connection) -> float | None:
    row = conn.execute("SELECT MIN(next_try) AS due FROM dicom_exports WHERE state = 'pending'").fetchone()
    return None if row is None else row["due"]


def settle_attempt(conn: Connection, export: ExportRow) -> None:
    """Record an attempt's outcome (``export`` as it is after the attempt)."""
    conn.execute(
        "UPDATE dicom_exports SET state = ?, attempts = ?, error = ?, next_try = ?, updated = ?"
        " WHERE job_id = ? AND destination = ?",
        (
            export.state,
            export.attempts,
            export.error,
            export.next_try,
            export.updated,
            export.job_id,
            export.destination,
        ),
    )


def recent_exports(conn: Connection, limit: int) -> list[ExportRow]:
    rows = conn.execute("SELECT * FROM dicom_exports ORDER BY updated DESC, job_id, destination LIMIT ?", (limit,))
    return [ExportRow(**_fields(row)) for row in rows]  # type: ignore[arg-type]  # the table's columns


def _fields(row: Row) -> dict[str, object]:
    return {key: row[key] for key in row.keys()}  # noqa: SIM118 - a Row iterates its values, not its keys
