"""Where ready operators wait and what started ones hold: in this process, or shared by jobs replicas.

Both implementations apply the same policy, :class:`~services.jobs.scheduler.Scheduler`:

* :class:`LocalQueue` is that scheduler in memory: one jobs process (``CLARET_QUEUE=local``, the default),
  decisions in microseconds, nothing written.
* :class:`SharedQueue` keeps the queue and the resource ledger in the database (``CLARET_QUEUE=database``),
  so that any number of jobs replicas share them. A decision round is one ``BEGIN IMMEDIATE`` transaction:
  it rebuilds a scheduler from the rows (held grants, waiting operators, stride passes), takes what fits
  and records each grant for the replica that runs its job; every replica then picks up the grants made to
  it. Rounds of different replicas are serialized by the database, so a GPU is never granted twice (the
  ``gpu_holds`` primary key would refuse it anyway) and an operator has one holder at a time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from services.jobs import queue_table
from services.jobs.model import Priority
from services.jobs.scheduler import (
    DEFAULT_AGEING_S,
    CannotHold,
    Capacity,
    Demand,
    Grant,
    Scheduler,
    WaitingView,
    lacks,
)
from shared.db import Database
from shared.db.connection import Connection
from shared.logging import get_logger

log = get_logger(__name__)

OperatorKey = tuple[str, str]
"""How the queue knows an operator: (job id, operator name)."""
OperatorGrant = Grant[OperatorKey]

WAKE_CHANNEL = "claret_jobs"
"""Notified (where the store can) when a replica has something to do: a grant made for it, a Cancel."""


@dataclass(frozen=True, slots=True)
class Ready:
    """An operator whose job started and whose upstream operators completed."""

    key: OperatorKey
    priority: Priority
    demand: Demand


@dataclass(frozen=True)
class QueueView:
    """What a queue holds now, as people look at it (the console's queue and GPU pages, ``claret queue``)."""

    nodes: dict[str, tuple[Capacity, Capacity]]
    """Each node's capacity and what is free on it."""
    held: tuple[OperatorGrant, ...]
    waiting: tuple[WaitingView[OperatorKey], ...]
    """The first waiting operators, in decision order."""
    waiting_total: int
    clock: float
    """The queue's clock when it was read (``WaitingView.since`` is on it)."""


def view_of(scheduler: Scheduler[OperatorKey], limit: int, clock: float) -> QueueView:
    return QueueView(
        nodes={name: (capacity, scheduler.free_on(name)) for name, capacity in scheduler.nodes.items()},
        held=tuple(scheduler.held.values()),
        waiting=tuple(scheduler.in_order(limit)),
        waiting_total=scheduler.waiting,
        clock=clock,
    )


class OperatorQueue(Protocol):
    """What the executor needs of a queue; see the module docstring for the two implementations."""

    @property
    def capacity(self) -> Capacity:
        """What this node has in all."""
        ...

    @property
    def free(self) -> Capacity:
        """What no grant holds on this node, as of the last decision."""
        ...

    def lacks(self, demand: Demand) -> str | None:
        """None if an empty node could hold ``demand``, else what it lacks."""
        ...

    async def submit(self, ready: Sequence[Ready]) -> None: ...

    async def withdraw(self, keys: Collection[OperatorKey]) -> None:
        """Remove waiting operators (their job ended); keys not waiting are ignored."""
        ...

    async def take(self, running: Collection[str]) -> list[OperatorGrant]:
        """Grants of operators this process is to start now. ``running``: the jobs it carries on now; a
        grant for another job it owns (one being adopted) waits for a later call."""
        ...

    async def release(self, key: OperatorKey) -> None:
        """Give back what an ended (or never started) operator holds, if anything."""
        ...

    async def restore(self, grant: OperatorGrant) -> None:
        """Hold again what a re-attached operator holds. :class:`CannotHold` when the node cannot hold it."""
        ...

    async def reclaim(self) -> None:
        """At start: grants this process took but did not start (it died in between) are to be taken again."""
        ...

    async def split(self, key: OperatorKey, parts: Sequence[OperatorGrant]) -> None:
        """Hand what ``key`` holds over to ``parts`` at once (an operator and the pipeline services it starts,
        whose requests it waited for together); what no part takes is released."""
        ...

    async def view(self, limit: int) -> QueueView:
        """What the queue holds now, the first ``limit`` waiting operators in decision order."""
        ...


class LocalQueue:
    """The scheduler of this process, as an :class:`OperatorQueue`."""

    def __init__(self, scheduler: Scheduler[OperatorKey], clock: Callable[[], float] = time.monotonic) -> None:
        self.scheduler = scheduler
        self._clock = clock  # the scheduler's own

    async def view(self, limit: int) -> QueueView:
        return view_of(self.scheduler, limit, self._clock())

    @property
    def capacity(self) -> Capacity:
        return self.scheduler.capacity

    @property
    def free(self) -> Capacity:
        return self.scheduler.free

    def lacks(self, demand: Demand) -> str | None:
        return self.scheduler.lacks(demand)

    async def submit(self, ready: Sequence[Ready]) -> None:
        for operator in ready:
            self.scheduler.submit(operator.key, operator.priority, operator.demand)

    async def withdraw(self, keys: Collection[OperatorKey]) -> None:
        for key in keys:
            self.scheduler.withdraw(key)

    async def take(self, running: Collection[str]) -> list[OperatorGrant]:
        return self.scheduler.take()

    async def release(self, key: OperatorKey) -> None:
        if key in self.scheduler.held:
            self.scheduler.release(key)

    async def restore(self, grant: OperatorGrant) -> None:
        self.scheduler.restore(grant)

    async def reclaim(self) -> None:
        return None  # a new process starts with an empty scheduler

    async def split(self, key: OperatorKey, parts: Sequence[OperatorGrant]) -> None:
        self.scheduler.release(key)
        for part in parts:
            self.scheduler.restore(part)


class SharedQueue:
    """The queue and ledger in the database, shared by the jobs replicas of one or more nodes.

    ``node`` names whose resources ``capacity`` describes (replicas on one host share one node);
    ``replica`` is this process: grants for the jobs it runs are recorded for it.
    """

    def __init__(
        self,
        db: Database,
        capacity: Capacity,
        *,
        node: str,
        replica: str,
        ageing_s: float = DEFAULT_AGEING_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._capacity = capacity
        self._node = node
        self._replica = replica
        self._ageing_s = ageing_s
        self._clock = clock  # wall clock: readiness times are compared across processes
        self._free = capacity
        self._lock = f"claret-queue:{node}"  # decision rounds of one node wait for each other

    @property
    def capacity(self) -> Capacity:
        return self._capacity

    @property
    def free(self) -> Capacity:
        return self._free

    def lacks(self, demand: Demand) -> str | None:
        return lacks(self._capacity, demand)

    async def submit(self, ready: Sequence[Ready]) -> None:
        if not ready:
            return
        now = self._clock()
        entries = [
            queue_table.Queued(*r.key, int(r.priority), r.demand.cpu, r.demand.memory_mb, r.demand.gpus, now)
            for r in ready
        ]
        await self._db.write(lambda conn: queue_table.enqueue(conn, entries))

    async def withdraw(self, keys: Collection[OperatorKey]) -> None:
        if keys:
            await self._db.write(lambda conn: queue_table.dequeue(conn, keys, self._replica))

    async def take(self, running: Collection[str]) -> list[OperatorGrant]:
        running = frozenset(running)  # a snapshot: the round runs on the database thread
        holds, for_others = await self._db.write(partial(self._round, running=running), queue=self._lock)
        if for_others:
            await self._db.notify(WAKE_CHANNEL)
        return [Grant((h.job_id, h.operator), Demand(h.cpu, h.memory_mb, len(h.gpu_ids)), h.gpu_ids) for h in holds]

    async def release(self, key: OperatorKey) -> None:
        at = self._clock()
        await self._db.write(lambda conn: queue_table.release(conn, key, at, self._replica))

    async def restore(self, grant: OperatorGrant) -> None:
        await self._db.write(partial(self._restore, grant=grant), queue=self._lock)

    async def reclaim(self) -> None:
        await self._db.write(lambda conn: queue_table.reclaim(conn, self._replica))

    async def split(self, key: OperatorKey, parts: Sequence[OperatorGrant]) -> None:
        await self._db.write(partial(self._split, key=key, parts=parts), queue=self._lock)

    async def view(self, limit: int) -> QueueView:
        """This node's queue as the next decision round would see it (nothing is granted or written)."""
        return await self._db.read(lambda conn: self._view(conn, limit))

    # -- in a transaction ---------------------------------------------------------------------------------

    def _scheduler(self, conn: Connection, now: float) -> Scheduler[OperatorKey]:
        """A scheduler holding what the ledger says is held on this node, with the saved stride passes."""
        scheduler: Scheduler[OperatorKey] = Scheduler(self._capacity, ageing_s=self._ageing_s, clock=lambda: now)
        scheduler.restore_passes({Priority(p): value for p, value in queue_table.passes(conn, self._node).items()})
        for hold in queue_table.held(conn, self._node):
            key = (hold.job_id, hold.operator)
            try:
                scheduler.restore(Grant(key, _demand(hold), hold.gpu_ids))
            except CannotHold as exc:  # replicas of this node were given different capacities
                log.warning("a grant does not fit this replica's capacity", job_id=hold.job_id, reason=str(exc))
                with contextlib.suppress(CannotHold):  # its GPUs at least are not to be granted again
                    scheduler.restore(Grant(key, Demand(0, 0, len(hold.gpu_ids)), hold.gpu_ids))
        return scheduler

    def _queued(self, conn: Connection, now: float) -> Scheduler[OperatorKey]:
        """A scheduler holding what the ledger holds on this node and the operators waiting for it."""
        scheduler = self._scheduler(conn, now)
        for entry in queue_table.waiting(conn, self._node):
            demand = Demand(entry.cpu, entry.memory_mb, entry.gpus)
            if scheduler.lacks(demand) is None:  # one that fits only another node is that node's to grant
                scheduler.submit((entry.job_id, entry.operator), Priority(entry.priority), demand, since=entry.since)
        return scheduler

    def _view(self, conn: Connection, limit: int) -> QueueView:
        now = self._clock()
        return view_of(self._queued(conn, now), limit, now)

    def _round(self, conn: Connection, running: frozenset[str]) -> tuple[list[queue_table.Hold], bool]:
        """One decision for the whole queue on this node: the grants this replica is to start, and whether
        it granted something to another replica."""
        now = self._clock()
        scheduler = self._queued(conn, now)
        grants = scheduler.take()
        for_others = False
        for grant in grants:
            demand = grant.demand
            key = grant.key
            owner = queue_table.grant(
                conn, self._node, key, demand.cpu, demand.memory_mb, grant.gpu_ids, now, self._replica
            )
            for_others |= owner != self._replica
        if grants:
            queue_table.save_passes(conn, self._node, {int(p): value for p, value in scheduler.passes.items()})
        self._free = scheduler.free
        picked = queue_table.pick(conn, self._replica)
        later = [hold for hold in picked if hold.job_id not in running]
        if later:  # jobs being adopted get theirs at a later call; an ended job's grants are given back
            queue_table.unpick_or_release(conn, [hold.id for hold in later], now)
        return [hold for hold in picked if hold.job_id in running], for_others

    def _split(self, conn: Connection, key: OperatorKey, parts: Sequence[OperatorGrant]) -> None:
        now = self._clock()
        queue_table.release(conn, key, now, self._replica)
        for part in parts:
            demand = part.demand
            queue_table.grant(
                conn, self._node, part.key, demand.cpu, demand.memory_mb, part.gpu_ids, now, self._replica, picked=True
            )

    def _restore(self, conn: Connection, grant: OperatorGrant) -> None:
        key = grant.key
        current = queue_table.holder(conn, key)
        if current is not None:
            if current.gpu_ids != grant.gpu_ids:
                raise CannotHold(f"the ledger grants {key} GPUs {list(current.gpu_ids)}, not {list(grant.gpu_ids)}")
            return
        self._scheduler(conn, self._clock()).restore(grant)  # CannotHold when the node cannot hold it now
        demand = grant.demand
        queue_table.grant(
            conn,
            self._node,
            key,
            demand.cpu,
            demand.memory_mb,
            grant.gpu_ids,
            self._clock(),
            self._replica,
            picked=True,
        )


def _demand(hold: queue_table.Hold) -> Demand:
    return Demand(hold.cpu, hold.memory_mb, len(hold.gpu_ids))
