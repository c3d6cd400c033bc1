"""The pipeline services table (migration 004): one row per running service, so a restart finds it again.

Plain functions over a ``Connection``; the lifecycle is in ``services/jobs/services.py``. ``UNIQUE (node,
identity)`` makes one service per container identity and node, whichever jobs process asks first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from services.jobs.runtimes.base import ServiceNetwork
from shared.db.connection import Connection, Row


@dataclass(frozen=True, slots=True)
class ServiceRow:
    id: str
    node: str
    identity: str
    """JSON ``[image, command]``."""
    name: str
    owner: str
    cpu: int
    memory_mb: int
    gpu_ids: tuple[str, ...]
    started: float
    runtime_id: str | None = None
    network: ServiceNetwork | None = None
    ready: float | None = None
    last_used: float = 0.0
    """When an operator (of any jobs process) last began or ended using it."""


def _row(row: Row) -> ServiceRow:
    spec = json.loads(row["spec"])
    network = json.loads(row["network"]) if row["network"] else None
    return ServiceRow(
        id=row["id"],
        node=row["node"],
        identity=row["identity"],
        name=row["name"],
        owner=row["owner"],
        cpu=spec["cpu"],
        memory_mb=spec["memory_mb"],
        gpu_ids=tuple(json.loads(row["gpu_ids"])),
        started=row["started"],
        runtime_id=row["runtime_id"],
        network=None if network is None else ServiceNetwork(network["ref"], network["host"]),
        ready=row["ready"],
        last_used=row["last_used"],
    )


def insert(conn: Connection, service: ServiceRow) -> None:
    """Claim the identity on the node: :class:`~shared.db.connection.Conflict` when a service holds it."""
    conn.execute(
        "INSERT INTO services (id, node, identity, name, owner, spec, gpu_ids, started, last_used)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            service.id,
            service.node,
            service.identity,
            service.name,
            service.owner,
            json.dumps({"cpu": service.cpu, "memory_mb": service.memory_mb}),
            json.dumps(list(service.gpu_ids)),
            service.started,
            service.started,
        ),
    )


def started(conn: Connection, service_id: str, runtime_id: str, network: ServiceNetwork) -> None:
    conn.execute(
        "UPDATE services SET runtime_id = ?, network = ? WHERE id = ?",
        (runtime_id, json.dumps({"ref": network.ref, "host": network.host}), service_id),
    )


def mark_ready(conn: Connection, service_id: str, at: float) -> None:
    conn.execute("UPDATE services SET ready = ?, last_used = ? WHERE id = ?", (at, at, service_id))


def used(conn: Connection, service_id: str, at: float) -> None:
    """An operator of another jobs process began or ended using the service: its owner's idle clock restarts."""
    conn.execute("UPDATE services SET last_used = ? WHERE id = ?", (at, service_id))


def adopt(conn: Connection, service_id: str, owner: str) -> None:
    conn.execute("UPDATE services SET owner = ? WHERE id = ?", (owner, service_id))


def adopt_orphans(conn: Connection, node: str, owner: str) -> list[ServiceRow]:
    """The services of ``node`` whose jobs process is no registered replica (taken over, or never one)
    become ``owner``'s; returns them."""
    rows = conn.execute(
        "UPDATE services SET owner = ? WHERE node = ? AND owner NOT IN (SELECT id FROM replicas) RETURNING *",
        (owner, node),
    ).fetchall()
    return [_row(row) for row in rows]


def delete(conn: Connection, service_id: str) -> None:
    conn.execute("DELETE FROM service_models WHERE service_id = ?", (service_id,))
    conn.execute("DELETE FROM services WHERE id = ?", (service_id,))


def has_loaded(conn: Connection, service_id: str, model: str) -> bool:
    """Whether the service loaded the model since it was last uploaded."""
    found = conn.execute("SELECT 1 FROM service_models WHERE service_id = ? AND model = ?", (service_id, model))
    return found.fetchone() is not None


def loaded(conn: Connection, service_id: str, model: str) -> None:
    """A model the service (Triton) has loaded: the Model Repository will not delete it meanwhile."""
    conn.execute(
        "INSERT INTO service_models (service_id, model) VALUES (?, ?) ON CONFLICT DO NOTHING", (service_id, model)
    )


def find(conn: Connection, node: str, identity: str) -> ServiceRow | None:
    row = conn.execute("SELECT * FROM services WHERE node = ? AND identity = ?", (node, identity)).fetchone()
    return None if row is None else _row(row)


def of_node(conn: Connection, node: str) -> list[ServiceRow]:
    return [_row(row) for row in conn.execute("SELECT * FROM services WHERE node = ? ORDER BY started", (node,))]
