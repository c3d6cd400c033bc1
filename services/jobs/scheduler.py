"""Which ready operators start now, and on which node: a resource-aware priority queue (docs/behaviour.md,
"Jobs and scheduling").

The jobs service submits an operator when it becomes ready (its job started and its upstream operators
completed), calls :meth:`Scheduler.take` after every change and starts what it returns, releases an operator
when it ends and withdraws waiting operators of a cancelled job. Everything here is synchronous and in
memory: it runs on the event loop thread, and a decision costs microseconds.

Order, as the platform's rules give it, and how each rule is kept:

* IMMEDIATE is strict: while any IMMEDIATE operator waits, only IMMEDIATE operators start. Submit refuses
  demands the node can never hold, so a waiting IMMEDIATE operator always starts once resources free up,
  and no other class can take those resources in the meantime.
* HIGHER : NORMAL : LOWER share starts 4 : 2 : 1 by stride scheduling: each class has a virtual pass, the
  class with the smallest pass among those with a head that fits starts one operator and its pass grows by
  ``stride = lcm(weights) / weight`` (integers, so shares are exact and never drift). A class that was
  empty, or whose heads did not fit, is lifted to the current pass at every start, so it cannot bank credit
  and then take a burst of starts.
* Ageing: an operator that has waited ``ageing_s`` counts one class higher per ``ageing_s`` waited (LOWER ->
  NORMAL -> HIGHER, never IMMEDIATE), so no operator waits forever. Within one class operators are oldest
  first (FIFO).
* Head-of-line: when a head does not fit, smaller operators behind it may start (backfill), unless that head
  has waited ``ageing_s``: then it holds a reservation and nothing after it in decision order starts until
  it fits, so a big GPU operator is not starved by a stream of small ones.

Nodes: usually one (the jobs process's own machine). A runtime that places operators across machines (Docker
Swarm) gives one :class:`Capacity` per node: an operator fits when one node can hold all of it, and its grant
names that node. Among the nodes that fit, the one with the most free room takes it (spread, as Swarm's own
placement does). :meth:`Scheduler.set_nodes` follows nodes that join, leave or change.

Scale: each priority keeps one FIFO per demand shape ``(cpu, memory, gpus)``; pipelines have few distinct
shapes, so a decision looks only at the heads of those FIFOs (classes x shapes), never at the whole queue.
A head is the oldest of its FIFO, so only heads need ageing. Withdraw is O(1): FIFOs are ``OrderedDict``
keyed by the caller's key (a linked list, so the head stays O(1) however many entries were removed).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, NamedTuple, TypeVar

from services.jobs.model import Priority

__all__ = [
    "DEFAULT_AGEING_S",
    "DEFAULT_WEIGHTS",
    "CannotHold",
    "Capacity",
    "Demand",
    "Grant",
    "Scheduler",
    "WaitingView",
    "lacks",
    "lacks_on_every",
]


K = TypeVar("K", bound=Hashable)
"""How the caller knows an operator (the jobs service: ``(job id, operator name)``)."""


class CannotHold(Exception):
    """:meth:`Scheduler.restore`: the node cannot hold this grant now (GPU ids it lacks or that are taken,
    not enough free cpu or memory): its operator is to be evicted, not the node over-committed."""


_SHARED = (Priority.HIGHER, Priority.NORMAL, Priority.LOWER)
"""The classes that share starts by weight; IMMEDIATE stands outside the shares."""

DEFAULT_WEIGHTS: Mapping[Priority, int] = MappingProxyType({Priority.HIGHER: 4, Priority.NORMAL: 2, Priority.LOWER: 1})
"""Shares of starts when all three classes have work waiting (the rule: about 4 : 2 : 1)."""

DEFAULT_AGEING_S = 60.0
"""After this many seconds of waiting an operator counts one class higher and may hold a reservation."""


@dataclass(frozen=True, slots=True)
class Demand:
    """An operator's requests: CPU cores, memory in MB and a number of GPUs."""

    cpu: int
    memory_mb: int
    gpus: int

    def __post_init__(self) -> None:
        if self.cpu < 0 or self.memory_mb < 0 or self.gpus < 0:
            raise ValueError(f"requests cannot be negative: {self}")


@dataclass(frozen=True, slots=True)
class Capacity:
    """What a node has (or has free): CPU cores, memory in MB and GPU ids in ledger order."""

    cpus: int
    memory_mb: int
    gpu_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.cpus < 0 or self.memory_mb < 0:
            raise ValueError(f"capacity cannot be negative: {self}")
        if len(set(self.gpu_ids)) != len(self.gpu_ids):
            raise ValueError(f"GPU ids must be distinct: {self.gpu_ids}")


@dataclass(frozen=True, slots=True)
class Grant(Generic[K]):
    """What one started operator holds: its demand and the explicit GPU ids granted to it, on ``node``."""

    key: K
    demand: Demand
    gpu_ids: tuple[str, ...]
    node: str = ""
    """The node that holds it: ``""`` when the scheduler has one node, else a name given to :meth:`set_nodes`."""

    def __post_init__(self) -> None:
        if len(self.gpu_ids) != self.demand.gpus or len(set(self.gpu_ids)) != len(self.gpu_ids):
            raise ValueError(f"a grant holds exactly {self.demand.gpus} distinct GPU ids, not {self.gpu_ids}")


@dataclass(frozen=True, slots=True)
class WaitingView(Generic[K]):
    """A waiting operator as :meth:`Scheduler.in_order` shows it: where it stands and why it has not started."""

    key: K
    priority: Priority
    """Its job's priority (ageing may make it compete one or more classes higher)."""
    demand: Demand
    since: float
    """When it became ready, on the scheduler's clock."""
    reason: str


class _Waiting(NamedTuple, Generic[K]):
    """A submitted operator; a tuple because 100,000 of them may wait and creation is on the hot path."""

    key: K
    priority: Priority
    demand: Demand
    seq: int
    """Submission order: FIFO among operators of one (effective) class, across shapes."""
    since: float


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def _advance(passes: dict[Priority, int], chosen: Priority, stride: Mapping[Priority, int]) -> None:
    """Charge one start to ``chosen``; lift every class behind its pass so none banks credit."""
    current = passes[chosen]
    for cls in _SHARED:
        if passes[cls] < current:
            passes[cls] = current
    passes[chosen] = current + stride[chosen]


class _Node:
    """One node's capacity and what no grant holds of it (GPUs as indexes into its ledger order)."""

    __slots__ = ("capacity", "free_cpus", "free_gpus", "free_memory_mb", "gpu_index", "name")

    def __init__(self, name: str, capacity: Capacity, held: Collection[Grant[Any]] = ()) -> None:
        self.name = name
        self.capacity = capacity
        self.gpu_index = {gpu: index for index, gpu in enumerate(capacity.gpu_ids)}
        # What grants made before a change of capacity hold stays held: free may go below zero until they end.
        self.free_cpus = capacity.cpus - sum(grant.demand.cpu for grant in held)
        self.free_memory_mb = capacity.memory_mb - sum(grant.demand.memory_mb for grant in held)
        taken = {self.gpu_index[gpu] for grant in held for gpu in grant.gpu_ids if gpu in self.gpu_index}
        self.free_gpus: set[int] = set(range(len(capacity.gpu_ids))) - taken

    def fits(self, demand: Demand) -> bool:
        return (
            demand.cpu <= self.free_cpus
            and demand.memory_mb <= self.free_memory_mb
            and demand.gpus <= len(self.free_gpus)
        )

    def room(self) -> tuple[int, int, int]:
        """Free GPUs, cores and memory: the node with the most is the one a spread placement picks."""
        return (len(self.free_gpus), self.free_cpus, self.free_memory_mb)

    def hold_gpus(self, count: int) -> tuple[str, ...]:
        """Take the ``count`` lowest free GPU ids (ledger order) off the free list."""
        if not count:
            return ()
        chosen = sorted(self.free_gpus)[:count]
        self.free_gpus.difference_update(chosen)
        return tuple(self.capacity.gpu_ids[i] for i in chosen)

    def hold(self, demand: Demand) -> None:
        self.free_cpus -= demand.cpu
        self.free_memory_mb -= demand.memory_mb

    def give_back(self, grant: Grant[Any]) -> None:
        self.free_cpus += grant.demand.cpu
        self.free_memory_mb += grant.demand.memory_mb
        self.free_gpus.update(self.gpu_index[gpu] for gpu in grant.gpu_ids if gpu in self.gpu_index)


def _total(capacities: Collection[Capacity]) -> Capacity:
    return Capacity(
        sum(c.cpus for c in capacities),
        sum(c.memory_mb for c in capacities),
        tuple(gpu for c in capacities for gpu in c.gpu_ids),
    )


def _shortfalls(have: Capacity, demand: Demand) -> list[tuple[str, str]]:
    """Each part of ``demand`` beyond ``have``: (what it needs, what there is), e.g. ("3 GPUs", "2")."""
    short = []
    if demand.cpu > have.cpus:
        short.append((_plural(demand.cpu, "CPU core"), str(have.cpus)))
    if demand.memory_mb > have.memory_mb:
        short.append((f"{demand.memory_mb} MB of memory", f"{have.memory_mb} MB"))
    if demand.gpus > len(have.gpu_ids):
        short.append((_plural(demand.gpus, "GPU"), str(len(have.gpu_ids))))
    return short


def lacks(capacity: Capacity, demand: Demand) -> str | None:
    """None if a node of ``capacity`` could hold ``demand`` when empty, else what it lacks ("needs 3 GPUs; the
    node has 2")."""
    return "; ".join(f"needs {need}; the node has {has}" for need, has in _shortfalls(capacity, demand)) or None


def _short_of(free: Capacity, demand: Demand) -> list[str]:
    """What ``demand`` needs beyond ``free``: "1 GPU (0 free)"."""
    return [f"{need} ({has} free)" for need, has in _shortfalls(free, demand)]


def lacks_on_every(nodes: Mapping[str, Capacity], demand: Demand) -> str | None:
    """None if one of ``nodes`` could hold ``demand`` when empty, else why none can (what the largest lacks,
    or that its parts are on different nodes)."""
    if not nodes:
        return "no node takes operators now"
    if len(nodes) == 1:
        return lacks(next(iter(nodes.values())), demand)
    if any(lacks(capacity, demand) is None for capacity in nodes.values()):
        return None
    largest = Capacity(
        max((c.cpus for c in nodes.values()), default=0),
        max((c.memory_mb for c in nodes.values()), default=0),
        max((c.gpu_ids for c in nodes.values()), key=len, default=()),
    )
    if (reason := lacks(largest, demand)) is not None:
        return reason.replace("the node has", "the largest node has")
    return (
        f"needs {_plural(demand.cpu, 'CPU core')}, {demand.memory_mb} MB of memory and "
        f"{_plural(demand.gpus, 'GPU')} on one node; no node has all of them"
    )


class Scheduler(Generic[K]):
    """Decides which waiting operators start now, on one node of fixed capacity or on several nodes.

    Keys are the caller's (for example ``(job_id, operator_name)``); a key is waiting, held or unknown.
    """

    def __init__(
        self,
        capacity: Capacity | Mapping[str, Capacity],
        *,
        weights: Mapping[Priority, int] = DEFAULT_WEIGHTS,
        ageing_s: float = DEFAULT_AGEING_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if set(weights) != set(_SHARED) or any(weights[p] < 1 for p in _SHARED):
            raise ValueError(f"weights need a positive integer for each of HIGHER, NORMAL, LOWER: {dict(weights)}")
        if not ageing_s > 0:
            raise ValueError(f"ageing_s must be positive (math.inf disables ageing): {ageing_s}")
        self._ageing_s = float(ageing_s)
        self._clock = clock
        lcm = math.lcm(*(weights[p] for p in _SHARED))
        self._stride = {p: lcm // weights[p] for p in _SHARED}
        self._pass = dict.fromkeys(_SHARED, 0)
        # priority -> shape -> FIFO of waiting operators; empty FIFOs are dropped so heads stay few.
        self._queues: dict[Priority, dict[Demand, OrderedDict[K, _Waiting[K]]]] = {p: {} for p in Priority}
        self._waiting: dict[K, _Waiting[K]] = {}
        self._immediate = 0  # how many IMMEDIATE operators wait: the strict tier is on while > 0
        self._held: dict[K, Grant[K]] = {}
        self._seq = itertools.count()
        self._nodes: dict[str, _Node] = {}
        self._only: _Node | None = None
        self._capacity = Capacity(0, 0, ())
        self.set_nodes({"": capacity} if isinstance(capacity, Capacity) else capacity)

    # --- views -------------------------------------------------------------------------------------------

    @property
    def capacity(self) -> Capacity:
        """What the nodes have in all."""
        return self._capacity

    @property
    def nodes(self) -> Mapping[str, Capacity]:
        """Each node's capacity, by name (one node named ``""`` unless :meth:`set_nodes` named them)."""
        return {name: node.capacity for name, node in self._nodes.items()}

    @property
    def waiting(self) -> int:
        """How many operators wait to start."""
        return len(self._waiting)

    @property
    def held(self) -> Mapping[K, Grant[K]]:
        """Live read-only view of the started operators' grants, by key."""
        return MappingProxyType(self._held)

    @property
    def free(self) -> Capacity:
        """A snapshot of what no grant holds now, on all nodes together."""
        return _total([self._free_on(node) for node in self._nodes.values()])

    def free_on(self, name: str) -> Capacity:
        """What no grant holds now on node ``name``. KeyError for a node the scheduler does not have."""
        return self._free_on(self._nodes[name])

    @staticmethod
    def _free_on(node: _Node) -> Capacity:
        gpu_ids = node.capacity.gpu_ids
        return Capacity(
            max(node.free_cpus, 0), max(node.free_memory_mb, 0), tuple(gpu_ids[i] for i in sorted(node.free_gpus))
        )

    @property
    def passes(self) -> Mapping[Priority, int]:
        """The classes' stride passes: the fair-share state a scheduler rebuilt elsewhere carries on from."""
        return MappingProxyType(self._pass)

    def restore_passes(self, passes: Mapping[Priority, int]) -> None:
        """Carry on from :attr:`passes` saved by an earlier scheduler (classes not given keep theirs)."""
        for cls, value in passes.items():
            self._pass[Priority(cls)] = int(value)

    def in_order(self, limit: int) -> list[WaitingView[K]]:
        """The first ``limit`` waiting operators in decision order (IMMEDIATE first, then the classes by their
        stride shares, oldest first within one) and why each waits: the room it lacks on every node, or
        the operator ahead that holds a reservation. The actual start order differs where a smaller
        operator backfills room a larger one ahead of it cannot use. Read-only: the shares are simulated."""
        now = self._clock()
        aged_since = now - self._ageing_s
        passes = dict(self._pass)
        heads = {(cls, shape): iter(fifo.values()) for cls in Priority for shape, fifo in self._queues[cls].items()}
        current = {where: next(entries) for where, entries in heads.items()}
        frees = {name: self._free_on(node) for name, node in self._nodes.items()}
        shown: list[WaitingView[K]] = []
        reserved: K | None = None
        while current and len(shown) < limit:
            where, entry = min(current.items(), key=lambda item: self._order(item[1], passes, now))
            if (following := next(heads[where], None)) is None:
                del current[where]
            else:
                current[where] = following
            if entry.priority is not Priority.IMMEDIATE:
                _advance(passes, self._class(entry, now), self._stride)
            reason = self._why(entry, frees, reserved)
            shown.append(WaitingView(entry.key, entry.priority, entry.demand, entry.since, reason))
            if reserved is None and entry.since <= aged_since and not self._fits(entry.demand):
                reserved = entry.key
        return shown

    def _order(self, entry: _Waiting[K], passes: Mapping[Priority, int], now: float) -> tuple[int, int, int, int]:
        """Where ``entry`` (a head) stands in decision order, given the classes' ``passes``: IMMEDIATE first,
        then the smallest pass (the higher class on a tie), then the oldest."""
        if entry.priority is Priority.IMMEDIATE:
            return (0, 0, 0, entry.seq)
        cls = self._class(entry, now)
        return (1, passes[cls], -int(cls), entry.seq)

    def _class(self, head: _Waiting[K], now: float) -> Priority:
        """The class a head competes in now: its own, or a higher one once it has aged."""
        return self._effective(head, now) if head.since <= now - self._ageing_s else head.priority

    def _why(self, entry: _Waiting[K], frees: Mapping[str, Capacity], reserved: K | None) -> str:
        demand = entry.demand
        if frees and all(lacks(free, demand) is not None for free in frees.values()):
            roomiest = max(frees.values(), key=lambda free: (len(free.gpu_ids), free.cpus, free.memory_mb))
            where = " on the node with the most room" if len(frees) > 1 else ""
            return f"waits for room: needs {' and '.join(_short_of(roomiest, demand))}{where}"
        if not frees:
            return "waits for a node: none takes operators now"
        if reserved is not None:
            return f"waits behind {reserved!r}, which has waited long enough to hold a reservation"
        return "starts at the next decision"

    def is_waiting(self, key: K) -> bool:
        """Whether ``key`` was submitted and has neither started nor been withdrawn."""
        return key in self._waiting

    # --- commands ----------------------------------------------------------------------------------------

    def set_nodes(self, nodes: Mapping[str, Capacity]) -> None:
        """The nodes operators may be placed on from now (nodes joined, left or changed). What grants hold
        on a node stays held (on a node that left, until released); a waiting operator no node can hold any
        more waits until one can. ValueError if two nodes name the same GPU id."""
        gpu_ids = [gpu for capacity in nodes.values() for gpu in capacity.gpu_ids]
        if len(set(gpu_ids)) != len(gpu_ids):
            raise ValueError(f"GPU ids must be distinct across nodes: {gpu_ids}")
        held: dict[str, list[Grant[K]]] = {}
        for grant in self._held.values():
            held.setdefault(grant.node, []).append(grant)
        unchanged = {name: node for name, node in self._nodes.items() if nodes.get(name) == node.capacity}
        self._nodes = {
            name: unchanged.get(name) or _Node(name, capacity, held.get(name, ())) for name, capacity in nodes.items()
        }
        self._capacity = _total(list(nodes.values()))
        self._only = next(iter(self._nodes.values())) if len(self._nodes) == 1 else None

    def lacks(self, demand: Demand) -> str | None:
        """None if a node could hold ``demand`` when empty, else what it lacks (see :func:`lacks`)."""
        if self._only is not None:  # every submit asks: no mapping made for one node
            return lacks(self._only.capacity, demand)
        return lacks_on_every(self.nodes, demand)

    def submit(self, key: K, priority: Priority, demand: Demand, since: float | None = None) -> None:
        """Queue a ready operator (ready ``since`` that clock reading, default now). ValueError if it can
        never fit or ``key`` is already waiting or held."""
        priority = Priority(priority)  # ValueError for UNKNOWN (0) and other numbers
        if key in self._waiting or key in self._held:
            raise ValueError(f"operator {key!r} is already {'waiting' if key in self._waiting else 'running'}")
        reason = self.lacks(demand)
        if reason is not None:
            raise ValueError(reason)
        entry = _Waiting(key, priority, demand, next(self._seq), self._clock() if since is None else since)
        shapes = self._queues[priority]
        fifo = shapes.get(demand)
        if fifo is None:
            fifo = shapes[demand] = OrderedDict()
        fifo[key] = entry
        self._waiting[key] = entry
        if priority is Priority.IMMEDIATE:
            self._immediate += 1

    def withdraw(self, key: K) -> bool:
        """Remove a waiting operator (its job was cancelled); False if it is not waiting."""
        entry = self._waiting.get(key)
        if entry is None:
            return False
        self._unqueue(entry)
        return True

    def take(self) -> list[Grant[K]]:
        """Reserve resources for every operator that may start now and return their grants in decision order."""
        grants: list[Grant[K]] = []
        if not self._waiting:
            return grants
        now = self._clock()  # one instant per decision round, so ageing is consistent within it
        while (entry := self._pick(now)) is not None:
            self._unqueue(entry)
            node = self._node_for(entry.demand)
            assert node is not None  # _pick returns only an operator that fits
            grant = Grant(entry.key, entry.demand, node.hold_gpus(entry.demand.gpus), node.name)
            node.hold(entry.demand)
            self._held[grant.key] = grant
            grants.append(grant)
        return grants

    def release(self, key: K) -> None:
        """Give back what an ended operator held. KeyError if ``key`` holds nothing (a double release is a bug)."""
        grant = self._held.pop(key, None)
        if grant is None:
            raise KeyError(f"operator {key!r} holds no resources")
        if (node := self._nodes.get(grant.node)) is not None:  # a node that left takes nothing back
            node.give_back(grant)

    def restore(self, grant: Grant[K]) -> None:
        """Hold again what an operator that survived a restart holds, on its node with exactly its GPU ids.

        :class:`CannotHold` if its node is gone, a GPU id is unknown or already held, or the CPU or memory
        would exceed what is free: the caller then evicts that operator rather than over-commit the node.
        ValueError if the key is waiting or held already (a caller's mistake, never to be taken for a changed
        node).
        """
        key, demand = grant.key, grant.demand
        if key in self._waiting or key in self._held:
            raise ValueError(f"operator {key!r} is already {'waiting' if key in self._waiting else 'running'}")
        node = self._nodes.get(grant.node)
        if node is None:
            raise CannotHold(f"node {grant.node!r} is not among the nodes ({sorted(self._nodes)})")
        unknown = [gpu for gpu in grant.gpu_ids if gpu not in node.gpu_index]
        if unknown:
            raise CannotHold(f"GPU ids {unknown} are not on this node (it has {list(node.capacity.gpu_ids)})")
        taken = [gpu for gpu in grant.gpu_ids if node.gpu_index[gpu] not in node.free_gpus]
        if taken:
            raise CannotHold(f"GPU ids {taken} are already held")
        if demand.cpu > node.free_cpus or demand.memory_mb > node.free_memory_mb:
            raise CannotHold(
                f"needs {demand.cpu} CPU and {demand.memory_mb} MB; "
                f"{node.free_cpus} CPU and {node.free_memory_mb} MB are free"
            )
        node.free_gpus.difference_update(node.gpu_index[gpu] for gpu in grant.gpu_ids)
        node.hold(demand)
        self._held[key] = grant

    # --- decision ----------------------------------------------------------------------------------------

    def _pick(self, now: float) -> _Waiting[K] | None:
        """The next operator to start, or None when nothing may start now.

        Conceptually a walk over the heads in decision order (IMMEDIATE first, strictly; then classes by
        stride pass, the higher class on a tie; oldest first within a class) that stops at the first head
        which fits (start it) or has waited ``ageing_s`` without fitting (its reservation: start nothing).
        Heads that neither fit nor have aged are skipped, which is the backfill. Rather than sorting, one
        pass finds the first deciding head, so a decision costs O(classes x shapes) with a small constant.
        """
        # Per dimension, the most any node has free: a head beyond it fits nowhere. With one node that is
        # the exact test; with several, a head within it is checked node by node (``several``).
        only = self._only
        several = only is None and len(self._nodes) > 1
        if only is not None:
            free_cpus, free_memory_mb, free_gpus = only.free_cpus, only.free_memory_mb, len(only.free_gpus)
        else:
            nodes = self._nodes.values()
            free_cpus = max((node.free_cpus for node in nodes), default=0)
            free_memory_mb = max((node.free_memory_mb for node in nodes), default=0)
            free_gpus = max((len(node.free_gpus) for node in nodes), default=0)
        aged_since = now - self._ageing_s  # a head submitted at or before this instant has aged
        if self._immediate:
            # Strict tier: only IMMEDIATE heads are considered, even when none of them fits.
            first: _Waiting[K] | None = None
            for fifo in self._queues[Priority.IMMEDIATE].values():
                head = next(iter(fifo.values()))
                if first is not None and head.seq > first.seq:
                    continue
                demand = head.demand
                if (
                    demand.cpu <= free_cpus
                    and demand.memory_mb <= free_memory_mb
                    and demand.gpus <= free_gpus
                    and (not several or self._fits(demand))
                ) or head.since <= aged_since:
                    first = head
            if first is None or not self._fits(first.demand):
                return None
            return first
        passes = self._pass
        # Position of each class in stride order: smallest pass first, the higher class on a tie.
        rank = {cls: position for position, cls in enumerate(sorted(_SHARED, key=lambda p: (passes[p], -p)))}
        best: tuple[int, int] | None = None
        chosen: _Waiting[K] | None = None
        chosen_class = Priority.HIGHER
        for base in _SHARED:
            for fifo in self._queues[base].values():
                head = next(iter(fifo.values()))
                demand = head.demand
                aged = head.since <= aged_since
                if not aged and (
                    demand.cpu > free_cpus
                    or demand.memory_mb > free_memory_mb
                    or demand.gpus > free_gpus
                    or (several and not self._fits(demand))
                ):
                    continue  # neither fits nor holds a reservation: others may backfill past it
                cls = self._effective(head, now) if aged else base
                order = (rank[cls], head.seq)
                if best is None or order < best:
                    best, chosen, chosen_class = order, head, cls
        if chosen is None or not self._fits(chosen.demand):
            return None  # nothing fits, or the first deciding head is an aged one holding its reservation
        _advance(self._pass, chosen_class, self._stride)
        return chosen

    def _effective(self, entry: _Waiting[K], now: float) -> Priority:
        """The class an operator competes in: one higher per ``ageing_s`` waited, at most HIGHER."""
        if entry.priority >= Priority.HIGHER:
            return Priority.HIGHER
        steps = int((now - entry.since) / self._ageing_s)  # ageing_s = inf gives 0
        return Priority(min(Priority.HIGHER, entry.priority + max(steps, 0)))

    # --- ledger ------------------------------------------------------------------------------------------

    def _fits(self, demand: Demand) -> bool:
        return self._node_for(demand) is not None

    def _node_for(self, demand: Demand) -> _Node | None:
        """The node that takes ``demand``: of those that fit, the one with the most free room."""
        if (only := self._only) is not None:  # one node: the hot path, no list
            return only if only.fits(demand) else None
        fitting = [node for node in self._nodes.values() if node.fits(demand)]
        if len(fitting) <= 1:
            return fitting[0] if fitting else None
        return max(fitting, key=_Node.room)

    def _unqueue(self, entry: _Waiting[K]) -> None:
        del self._waiting[entry.key]
        shapes = self._queues[entry.priority]
        fifo = shapes[entry.demand]
        del fifo[entry.key]
        if not fifo:
            del shapes[entry.demand]
        if entry.priority is Priority.IMMEDIATE:
            self._immediate -= 1
