"""The queue and services pages, over Claret's scheduling API (``claret.jobs.Scheduling``): the nodes and what
is free on each, the operators waiting in the order they would start and why, those waiting for upstream
operators, the grants held, and the pipeline services. The GPUs page reads the same snapshot for its ledger.

The snapshot names jobs by id only; their names come from Jobs.Status, once per job (:class:`JobNames`)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from claret.client import PlatformClient
from claret.records import QueueSnapshot
from services.console.common import Client, JobNames, page, platform

QUEUE_SHOWN = 50
"""Waiting operators (and as many waiting for upstream ones) a page lists; "N more waiting" counts the rest."""
REFRESH_MS = 2000
"""How often the pages' live parts come again."""


@dataclass(frozen=True)
class Queue:
    """A snapshot of the queue and the names of the jobs it names (those the platform knows)."""

    snapshot: QueueSnapshot
    names: dict[str, str]

    @property
    def more_waiting(self) -> int:
        """How many wait beyond those the snapshot lists."""
        return max(self.snapshot.waiting_total - len(self.snapshot.waiting), 0)

    def service_name(self, service_id: str) -> str:
        """A pipeline service's name (its grant names only its id); the id where the snapshot lists no such service."""
        return next((s.name for s in self.snapshot.services if s.id == service_id), service_id)


async def read_queue(client: PlatformClient, names: JobNames, limit: int) -> Queue:
    """A snapshot listing ``limit`` waiting operators, with its jobs' names (one round of calls for new ones)."""
    snapshot = await client.queue_snapshot(limit)
    named = [entry.job_id for entries in (snapshot.held, snapshot.waiting, snapshot.blocked) for entry in entries]
    return Queue(snapshot, await names.of(client, named))


class QueuePages:
    """``/queue`` and ``/services``, each with a live part the browser asks again every :data:`REFRESH_MS`."""

    def __init__(self, client: Client, names: JobNames) -> None:
        self._client = client
        self._names = names

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/queue", self._page("queue.html")),
            web.get("/queue/live", self._page("_queue_live.html")),
            web.get("/services", self._page("services.html")),
            web.get("/services/live", self._page("_services_live.html")),
        ]

    def _page(self, template: str) -> Handler:
        """A page and its live part differ only in their template: both render the same snapshot."""

        async def handler(request: web.Request) -> web.StreamResponse:
            async with platform(self._client) as client:
                queue = await read_queue(client, self._names, QUEUE_SHOWN)
            return page(template, request, queue=queue, every_ms=REFRESH_MS)

        return handler
