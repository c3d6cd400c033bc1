"""The payloads table (the files themselves are in :mod:`shared.payload_store`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum

from shared.db.connection import Connection


class PayloadType(IntEnum):
    """Wire values of ``PayloadType``."""

    PIPELINE = 1
    """Created with a job; uploads land in ``input/``."""
    REUSABLE = 2
    """Created by Payloads.Create; may be copied into jobs' inputs."""


@dataclass(frozen=True)
class PayloadRecord:
    id: str
    type: PayloadType
    job_id: str | None
    read_only: bool
    metadata: dict[str, str]
    created: float


def insert(conn: Connection, record: PayloadRecord) -> None:
    conn.execute(
        "INSERT INTO payloads (id, type, job_id, read_only, metadata, created) VALUES (?, ?, ?, ?, ?, ?)",
        (
            record.id,
            int(record.type),
            record.job_id,
            int(record.read_only),
            json.dumps(record.metadata),
            record.created,
        ),
    )


def get(conn: Connection, payload_id: str) -> PayloadRecord | None:
    row = conn.execute("SELECT * FROM payloads WHERE id = ?", (payload_id,)).fetchone()
    if row is None:
        return None
    return PayloadRecord(
        id=row["id"],
        type=PayloadType(row["type"]),
        job_id=row["job_id"],
        read_only=bool(row["read_only"]),
        metadata=json.loads(row["metadata"]),
        created=row["created"],
    )


def delete(conn: Connection, payload_id: str) -> bool:
    return conn.execute("DELETE FROM payloads WHERE id = ?", (payload_id,)).rowcount == 1


def set_read_only(conn: Connection, payload_id: str) -> None:
    conn.execute("UPDATE payloads SET read_only = 1 WHERE id = ?", (payload_id,))


def job_not_stopped(conn: Connection, job_id: str) -> bool:
    """True while the job is pending or running: its payload must stay, for a later Start or for the
    operators reading and writing it. Only ``stopped`` counts (set once, when the job ends)."""
    row = conn.execute("SELECT stopped FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return row is not None and row["stopped"] is None
