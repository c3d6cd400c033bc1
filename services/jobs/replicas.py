"""Jobs replicas sharing one database (``CLARET_QUEUE=database``): heartbeats, passed-on Cancels, takeovers.

Each replica runs the jobs it started (``jobs.owner``); the queue and ledger they share are in
``services/jobs/queue.py``. A replica writes its heartbeat every ``queue_poll`` seconds from the moment it
registers (a task of its own, so a long recovery or takeover does not silence it), and every ``queue_poll``
seconds, or when notified, it

* adopts the jobs and pipeline services of replicas silent for ``takeover_after`` seconds (their operators
  and services are re-attached, as after a restart: Docker containers by name, sandboxes by process);
* ends the jobs it runs whose Cancel reached another replica;
* starts what the queue granted to it, including grants another replica's decision made.

A replica that finds its own row gone was taken over while it stalled: it lets go of every job (the new
owner carries them on; its ``operator_starting`` guard keeps it from starting more) and registers afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from functools import partial

from services.jobs import queue_table, service_table
from services.jobs.executor import Executor
from services.jobs.model import JobStatus
from services.jobs.queue import WAKE_CHANNEL
from shared.db import Database
from shared.db.connection import Connection
from shared.logging import get_logger

log = get_logger(__name__)


class ReplicaLoop:
    """This jobs process as one of several replicas."""

    def __init__(
        self, db: Database, executor: Executor, *, replica: str, node: str, poll: float, takeover_after: float
    ) -> None:
        """``replica`` names this process (stable across its restarts) on ``node`` (whose resources it grants);
        it looks every ``poll`` seconds and takes over replicas silent for ``takeover_after`` seconds."""
        self._db = db
        self._executor = executor
        self._replica = replica
        self._node = node
        self._poll = poll
        self._takeover_after = takeover_after
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._taken_over = False

    async def register(self) -> None:
        """Announce this replica and keep its heartbeat from now on: before it recovers its own jobs, so
        that no other takes them over meanwhile, however long that takes."""
        await self._announce()
        self._tasks.append(asyncio.create_task(self._beat(), context=contextvars.Context()))

    async def start(self) -> None:
        """Look every ``queue_poll`` seconds, and at once when the store notifies (PostgreSQL)."""
        if await self._db.listen(WAKE_CHANNEL, self._wake.set):
            log.info("jobs replica woken by notifications", replica=self._replica)
        self._tasks.append(asyncio.create_task(self._run(), context=contextvars.Context()))

    async def stop(self) -> None:
        """Stop looking; the caller closes the executor, then calls :meth:`leave`."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def leave(self) -> None:
        """Let the other replicas take this one's jobs over at once."""
        await self._db.write(partial(queue_table.mark_gone, replica=self._replica))

    async def _announce(self) -> None:
        await self._db.write(partial(queue_table.register, replica=self._replica, node=self._node, at=time.time()))
        log.info("jobs replica registered", replica=self._replica, node=self._node)

    async def _beat(self) -> None:
        while True:
            try:
                if not await self._db.write(partial(queue_table.heartbeat, replica=self._replica, at=time.time())):
                    self._taken_over = True  # the next look lets go of every job
                    self._wake.set()
            except Exception:  # the database may be briefly unavailable: the next beat tries again
                log.exception("jobs replica heartbeat failed", replica=self._replica)
            await asyncio.sleep(self._poll)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be briefly unavailable: try again at the next tick
                log.exception("jobs replica tick failed", replica=self._replica)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()

    async def tick(self) -> None:
        """One look: takeovers, passed-on Cancels, grants."""
        if self._taken_over:
            log.error("this replica was taken over while it stalled; letting go of its jobs", replica=self._replica)
            await self._executor.forget_all()
            await self._executor.services.let_go()
            self._taken_over = False
            await self._announce()
            return
        adopted, services = await self._db.write(self._take_over)
        if services:
            log.warning("took over the services of a silent replica", replica=self._replica, services=services)
            await self._executor.services.carry_on(services)  # before the operators that use them
        if adopted:
            log.warning("took over the jobs of a silent replica", replica=self._replica, jobs=adopted)
            await self._executor.adopt(adopted)
        for job_id, message in await self._db.read(partial(queue_table.cancel_requests, owner=self._replica)):
            await self._executor.end(job_id, JobStatus.CANCELED, message)
        await self._executor.pump()

    def _take_over(self, conn: Connection) -> tuple[list[str], list[service_table.ServiceRow]]:
        now = time.time()
        queue_table.sweep(conn, now)  # grants of operators that ended, left by a replica that died at that moment
        jobs = queue_table.take_over(conn, self._replica, now - self._takeover_after)
        return jobs, service_table.adopt_orphans(conn, self._node, self._replica)
