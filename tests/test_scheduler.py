"""The operator scheduler: resource fit with explicit GPU ids, IMMEDIATE, 4:2:1 shares, ageing, reservations."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.jobs.model import Priority
from services.jobs.scheduler import CannotHold, Capacity, Demand, Grant, Scheduler

H, N, L, IMM = Priority.HIGHER, Priority.NORMAL, Priority.LOWER, Priority.IMMEDIATE
ONE_GPU = Demand(cpu=1, memory_mb=256, gpus=1)
SMALL = Demand(cpu=1, memory_mb=256, gpus=0)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def scheduler(
    cpus: int = 8, memory_mb: int = 8192, gpus: int = 0, *, ageing_s: float = 60.0
) -> tuple[Scheduler, FakeClock]:
    clock = FakeClock()
    capacity = Capacity(cpus=cpus, memory_mb=memory_mb, gpu_ids=tuple(str(i) for i in range(gpus)))
    return Scheduler(capacity, ageing_s=ageing_s, clock=clock), clock


def keys(grants: list[Grant]) -> list[Hashable]:
    return [grant.key for grant in grants]


# --- GPUs as explicit ids ----------------------------------------------------------------------------------


def test_four_one_gpu_operators_on_two_gpus() -> None:
    sched, _ = scheduler(gpus=2)
    for name in "abcd":
        sched.submit(name, N, ONE_GPU)

    first = sched.take()
    assert keys(first) == ["a", "b"]
    assert {gpu for grant in first for gpu in grant.gpu_ids} == {"0", "1"}
    assert sched.waiting == 2
    assert sched.take() == []
    assert not sched.free.gpu_ids

    sched.release("b")  # frees GPU "1"
    assert sched.free.gpu_ids == ("1",)
    (grant,) = sched.take()
    assert grant == Grant("c", ONE_GPU, ("1",))
    assert sched.held["a"].gpu_ids == ("0",)
    assert sched.waiting == 1

    sched.release("a")
    (grant,) = sched.take()
    assert grant.key == "d" and grant.gpu_ids == ("0",)


def test_multi_gpu_grant_takes_lowest_free_ids() -> None:
    sched, _ = scheduler(gpus=4)
    sched.submit("one", N, ONE_GPU)
    sched.submit("three", N, Demand(1, 256, 3))
    grants = sched.take()
    assert [g.gpu_ids for g in grants] == [("0",), ("1", "2", "3")]
    sched.release("one")
    sched.submit("two", N, Demand(1, 256, 2))
    assert sched.take() == []
    sched.release("three")
    assert sched.take() == [Grant("two", Demand(1, 256, 2), ("0", "1"))]


def test_cpu_and_memory_limit_starts() -> None:
    sched, _ = scheduler(cpus=4, memory_mb=1000)
    sched.submit("cpu-hog", N, Demand(3, 100, 0))
    sched.submit("mem-hog", N, Demand(1, 900, 0))
    sched.submit("third", N, Demand(1, 100, 0))  # 5 CPUs and 1100 MB in all: does not fit beside both
    assert keys(sched.take()) == ["cpu-hog", "mem-hog"]
    assert sched.free == Capacity(0, 0, ())
    sched.release("mem-hog")
    assert keys(sched.take()) == ["third"]


# --- IMMEDIATE -------------------------------------------------------------------------------------------


def test_immediate_jumps_the_queue() -> None:
    sched, _ = scheduler(cpus=1)
    sched.submit("low", L, SMALL)
    sched.submit("normal", N, SMALL)
    sched.submit("high", H, SMALL)
    sched.submit("now", IMM, SMALL)
    sched.submit("now-2", IMM, SMALL)
    order: list[str] = []
    while sched.waiting:
        (grant,) = sched.take()
        order.append(str(grant.key))
        sched.release(grant.key)
    assert order[:3] == ["now", "now-2", "high"]
    assert sorted(order[3:]) == ["low", "normal"]


def test_immediate_that_does_not_fit_blocks_every_other_class() -> None:
    sched, _ = scheduler(cpus=8, gpus=2)
    sched.submit("running", N, ONE_GPU)
    assert keys(sched.take()) == ["running"]

    sched.submit("urgent", IMM, Demand(1, 256, 2))
    sched.submit("gpu", H, ONE_GPU)  # would fit on the free GPU the IMMEDIATE one needs
    sched.submit("cpu", H, SMALL)  # needs nothing the IMMEDIATE one needs; strict tier blocks it too
    assert sched.take() == []
    assert sched.free.gpu_ids == ("1",)

    sched.release("running")
    urgent, cpu = sched.take()  # once the IMMEDIATE one started, the others may start again ...
    assert urgent == Grant("urgent", Demand(1, 256, 2), ("0", "1"))
    assert cpu.key == "cpu"
    assert sched.is_waiting("gpu")  # ... but the GPU operator waits for a GPU


def test_immediate_backfills_within_its_own_tier() -> None:
    sched, _ = scheduler(cpus=4)
    sched.submit("running", N, Demand(2, 0, 0))
    sched.take()
    sched.submit("big", IMM, Demand(4, 0, 0))
    sched.submit("small", IMM, Demand(1, 0, 0))
    sched.submit("other", H, Demand(1, 0, 0))
    assert keys(sched.take()) == ["small"]  # young IMMEDIATE head: smaller IMMEDIATE work may pass it
    assert sched.take() == []


def test_aged_immediate_head_reserves_within_its_tier() -> None:
    sched, clock = scheduler(cpus=4)
    sched.submit("running", N, Demand(2, 0, 0))
    sched.take()
    sched.submit("big", IMM, Demand(4, 0, 0))
    clock.advance(60.0)
    sched.submit("small", IMM, Demand(1, 0, 0))
    assert sched.take() == []  # "big" has waited 60 s: the younger IMMEDIATE one may not pass it now
    sched.release("running")
    assert keys(sched.take()) == ["big"]


def test_ageing_never_reaches_immediate() -> None:
    sched, clock = scheduler(cpus=1)
    sched.submit("old-low", L, SMALL)
    clock.advance(3600.0)  # sixty ageing periods
    sched.submit("urgent", IMM, SMALL)
    assert keys(sched.take()) == ["urgent"]
    sched.release("urgent")
    assert keys(sched.take()) == ["old-low"]


# --- shares and ageing -----------------------------------------------------------------------------------


def test_shares_are_4_2_1_when_all_classes_are_saturated() -> None:
    sched, _ = scheduler(cpus=1)
    for cls in (H, N, L):
        for n in range(700):
            sched.submit((cls, n), cls, SMALL)
    started: Counter[Priority] = Counter()
    for _ in range(700):
        (grant,) = sched.take()
        started[grant.key[0]] += 1  # type: ignore[index]
        sched.release(grant.key)
    assert started[H] == pytest.approx(400, rel=0.05)
    assert started[N] == pytest.approx(200, rel=0.05)
    assert started[L] == pytest.approx(100, rel=0.05)


def test_an_empty_class_does_not_bank_credit() -> None:
    sched, _ = scheduler(cpus=1)
    for n in range(100):  # HIGHER alone for 100 starts
        sched.submit(("h", n), H, SMALL)
        (grant,) = sched.take()
        sched.release(grant.key)
    for n in range(70):
        sched.submit(("h2", n), H, SMALL)
        sched.submit(("l", n), L, SMALL)
    first_ten = []
    for _ in range(10):
        (grant,) = sched.take()
        first_ten.append(grant.key[0])  # type: ignore[index]
        sched.release(grant.key)
    assert first_ten.count("l") <= 3  # a burst of LOWER would mean it kept credit from its idle time


def test_fifo_within_one_priority() -> None:
    sched, _ = scheduler(cpus=1)
    names = [f"op{i}" for i in range(20)]
    shapes = [SMALL, Demand(1, 128, 0), Demand(1, 64, 0)]
    for i, name in enumerate(names):
        sched.submit(name, N, shapes[i % 3])  # across several shapes, FIFO still holds
    order: list[str] = []
    while sched.waiting:
        (grant,) = sched.take()
        order.append(str(grant.key))
        sched.release(grant.key)
    assert order == names


def test_lower_progresses_under_a_continuous_stream_of_higher() -> None:
    sched, clock = scheduler(cpus=1)
    sched.submit("low", L, SMALL)
    for n in range(20):
        sched.submit(("h", n), H, SMALL)
        clock.advance(1.0)
        (grant,) = sched.take()
        sched.release(grant.key)
        if grant.key == "low":
            break
    else:
        pytest.fail("LOWER never started under HIGHER work")
    assert n <= 5  # its share alone: one start in five against HIGHER


def test_ageing_promotes_lower_even_when_shares_would_not() -> None:
    weights = {H: 1000, N: 2, L: 1}  # shares alone would start LOWER after about 1000 HIGHER starts

    def starts_before_low(ageing_s: float) -> int:
        clock = FakeClock()
        sched = Scheduler(Capacity(1, 1024, ()), weights=weights, ageing_s=ageing_s, clock=clock)
        sched.submit("low-first", L, SMALL)  # takes LOWER's early start, so its pass is far ahead
        sched.submit("low", L, SMALL)
        for n in range(2000):
            sched.submit(("h", n), H, SMALL)
            clock.advance(1.0)
            (grant,) = sched.take()
            sched.release(grant.key)
            if grant.key == "low":
                return n
        return 2000

    assert starts_before_low(ageing_s=math.inf) > 500
    # At 60 s it counts as NORMAL, a class that had no work, so it was kept at the current pass: it starts.
    assert starts_before_low(ageing_s=60.0) <= 61


def test_aged_operator_reserves_until_it_fits() -> None:
    """A 4-CPU operator under a stream of 1-CPU operators that keeps the node busy starts after ageing."""

    def steps_until_big_starts(ageing_s: float) -> int | None:
        sched, clock = scheduler(cpus=4, ageing_s=ageing_s)
        ends: dict[Hashable, float] = {}
        for n in range(4):
            sched.submit(("first", n), N, SMALL)
        for i, grant in enumerate(sched.take()):
            ends[grant.key] = clock.now + 1 + i  # staggered: one CPU frees per step, never all four
        sched.submit("big", N, Demand(4, 0, 0))
        counter = 0
        for step in range(300):
            clock.advance(1.0)
            for key in [k for k, end in ends.items() if end <= clock.now]:
                sched.release(key)
                del ends[key]
            while sched.waiting < 5:  # always smaller work waiting behind the big one
                sched.submit(("small", counter), N, SMALL)
                counter += 1
            for grant in sched.take():
                if grant.key == "big":
                    return step
                ends[grant.key] = clock.now + 4
        return None

    assert steps_until_big_starts(math.inf) is None  # without reservations it starves
    step = steps_until_big_starts(60.0)
    assert step is not None and 59 <= step <= 64  # reserved at 60 s, started once the small ones drained


def test_young_head_that_does_not_fit_lets_smaller_work_backfill() -> None:
    sched, clock = scheduler(cpus=4)
    sched.submit("running", N, Demand(2, 0, 0))
    sched.take()
    sched.submit("big", H, Demand(4, 0, 0))
    sched.submit("small", L, Demand(1, 0, 0))
    assert keys(sched.take()) == ["small"]
    sched.release("small")
    clock.advance(60.0)
    sched.submit("small-2", H, Demand(1, 0, 0))
    assert sched.take() == []  # "big" has waited 60 s: it holds a reservation
    sched.release("running")
    assert keys(sched.take()) == ["big"]


# --- waiting, withdraw, restore, refusals ----------------------------------------------------------------


def test_withdraw() -> None:
    sched, _ = scheduler(cpus=1)
    sched.submit("a", N, SMALL)
    sched.submit("b", N, SMALL)
    sched.submit("c", N, SMALL)
    assert sched.withdraw("b") is True
    assert sched.withdraw("b") is False
    assert sched.withdraw("unknown") is False
    assert sched.waiting == 2
    assert keys(sched.take()) == ["a"]
    assert sched.withdraw("a") is False  # held, not waiting
    sched.release("a")
    assert keys(sched.take()) == ["c"]
    assert sched.withdraw("c") is False
    sched.submit("b", N, SMALL)  # a withdrawn key may be submitted again
    assert sched.is_waiting("b")


def test_withdrawing_the_last_immediate_unblocks_the_others() -> None:
    sched, _ = scheduler(cpus=2)
    sched.submit("running", N, Demand(1, 0, 0))
    sched.take()
    sched.submit("urgent", IMM, Demand(2, 0, 0))
    sched.submit("normal", N, Demand(1, 0, 0))
    assert sched.take() == []
    assert sched.withdraw("urgent")
    assert keys(sched.take()) == ["normal"]


def test_submit_refusals() -> None:
    sched, _ = scheduler(cpus=2, memory_mb=1024, gpus=1)
    sched.submit("a", N, SMALL)
    with pytest.raises(ValueError, match="already waiting"):
        sched.submit("a", H, SMALL)
    sched.take()
    with pytest.raises(ValueError, match="already running"):
        sched.submit("a", H, SMALL)
    with pytest.raises(ValueError, match="needs 2 GPUs; the node has 1"):
        sched.submit("b", N, Demand(1, 0, 2))
    with pytest.raises(ValueError):
        sched.submit("c", 0, SMALL)  # type: ignore[arg-type]  # JOB_PRIORITY_UNKNOWN
    with pytest.raises(ValueError):
        Demand(-1, 0, 0)
    with pytest.raises(KeyError):
        sched.release("never")
    assert sched.waiting == 0 and list(sched.held) == ["a"]


def test_lacks_names_what_the_node_lacks() -> None:
    sched, _ = scheduler(cpus=4, memory_mb=2048, gpus=2)
    assert sched.lacks(Demand(4, 2048, 2)) is None
    assert sched.lacks(Demand(0, 0, 0)) is None
    assert sched.lacks(Demand(8, 0, 0)) == "needs 8 CPU cores; the node has 4"
    assert sched.lacks(Demand(1, 4096, 0)) == "needs 4096 MB of memory; the node has 2048 MB"
    assert sched.lacks(Demand(1, 0, 3)) == "needs 3 GPUs; the node has 2"
    assert sched.lacks(Demand(5, 0, 3)) == "needs 5 CPU cores; the node has 4; needs 3 GPUs; the node has 2"
    no_gpus, _ = scheduler(gpus=0)
    assert no_gpus.lacks(Demand(1, 0, 1)) == "needs 1 GPU; the node has 0"


def test_restore_holds_exactly_the_given_gpu_ids() -> None:
    sched, _ = scheduler(cpus=4, memory_mb=1024, gpus=3)
    sched.restore(Grant(("job", "seg"), Demand(1, 256, 2), ("2", "0")))
    assert sched.free == Capacity(3, 768, ("1",))
    sched.submit("new", N, ONE_GPU)
    assert [g.gpu_ids for g in sched.take()] == [("1",)]

    with pytest.raises(CannotHold, match="already held"):
        sched.restore(Grant("clash", ONE_GPU, ("0",)))
    with pytest.raises(CannotHold, match="not on this node"):
        sched.restore(Grant("ghost", ONE_GPU, ("7",)))
    with pytest.raises(ValueError, match="already running") as misuse:  # a caller's mistake, not the node's
        sched.restore(Grant(("job", "seg"), Demand(0, 0, 0), ()))
    assert not isinstance(misuse.value, CannotHold)
    with pytest.raises(CannotHold, match="are free"):
        sched.restore(Grant("too-big", Demand(4, 0, 0), ()))
    with pytest.raises(ValueError):
        Grant("wrong-count", Demand(0, 0, 2), ("1",))

    sched.release(("job", "seg"))
    assert sched.free == Capacity(3, 768, ("0", "2"))  # "new" still holds 1 CPU, 256 MB and GPU "1"


# --- random sequences ------------------------------------------------------------------------------------

SHAPES = [Demand(0, 0, 0), Demand(1, 128, 0), Demand(2, 512, 1), Demand(1, 256, 2), Demand(4, 1024, 3)]
OPS = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from(list(Priority)), st.sampled_from(SHAPES)),
    st.tuples(st.just("release"), st.integers(0, 50)),
    st.tuples(st.just("withdraw"), st.integers(0, 50)),
    st.tuples(st.just("take")),
    st.tuples(st.just("tick"), st.sampled_from([1.0, 30.0, 61.0])),
)


def check_invariants(sched: Scheduler, waiting: set[int]) -> None:
    capacity = sched.capacity
    grants = list(sched.held.values())
    gpu_ids = [gpu for grant in grants for gpu in grant.gpu_ids]
    assert len(gpu_ids) == len(set(gpu_ids)), "a GPU id is held twice"
    assert set(gpu_ids) <= set(capacity.gpu_ids)
    assert set(gpu_ids).isdisjoint(sched.free.gpu_ids)
    assert len(gpu_ids) + len(sched.free.gpu_ids) == len(capacity.gpu_ids)
    assert sum(g.demand.cpu for g in grants) + sched.free.cpus == capacity.cpus
    assert sum(g.demand.memory_mb for g in grants) + sched.free.memory_mb == capacity.memory_mb
    assert sched.free.cpus >= 0 and sched.free.memory_mb >= 0
    assert all(len(g.gpu_ids) == g.demand.gpus for g in grants)
    assert waiting.isdisjoint(sched.held), "a key is both waiting and held"
    assert sched.waiting == len(waiting)
    assert all(sched.is_waiting(key) for key in waiting)


@settings(max_examples=200, deadline=None)
@given(st.lists(OPS, max_size=80))
def test_random_sequences_keep_the_ledger_sound(ops: list[tuple[object, ...]]) -> None:
    sched, clock = scheduler(cpus=6, memory_mb=2048, gpus=3)
    waiting: set[int] = set()
    granted: Counter[int] = Counter()
    submitted: set[int] = set()
    withdrawn: set[int] = set()
    next_key = 0

    def take() -> None:
        for grant in sched.take():
            assert isinstance(grant.key, int)
            assert grant.key in waiting
            waiting.discard(grant.key)
            granted[grant.key] += 1

    for op in ops:
        match op:
            case ("submit", priority, demand):
                assert isinstance(priority, Priority) and isinstance(demand, Demand)
                sched.submit(next_key, priority, demand)
                waiting.add(next_key)
                submitted.add(next_key)
                next_key += 1
            case ("release", index):
                held = sorted(sched.held)  # type: ignore[type-var]
                if held:
                    assert isinstance(index, int)
                    sched.release(held[index % len(held)])
            case ("withdraw", index):
                assert isinstance(index, int)
                was_waiting = index in waiting
                assert sched.withdraw(index) is was_waiting
                if was_waiting:
                    waiting.discard(index)
                    withdrawn.add(index)
            case ("take",):
                take()
            case ("tick", seconds):
                assert isinstance(seconds, float)
                clock.advance(seconds)
        check_invariants(sched, waiting)

    # Releasing everything again and again drains the queue: every operator starts, exactly once.
    for _ in range(len(submitted) + 1):
        for key in list(sched.held):
            sched.release(key)
        take()
        check_invariants(sched, waiting)
        if not waiting:
            break
        clock.advance(1.0)
    assert not waiting
    assert set(granted) == submitted - withdrawn
    assert all(count == 1 for count in granted.values())


# --- several nodes (a runtime that places operators across machines) -------------------------------------------


def two_workers(gpus: int = 2) -> Scheduler:
    """Two nodes of 4 cores, 4096 MB and ``gpus`` GPUs each, as the swarm runtime would report them."""
    return Scheduler(
        {
            name: Capacity(cpus=4, memory_mb=4096, gpu_ids=tuple(f"GPU-{name}{i}" for i in range(gpus)))
            for name in ("w1", "w2")
        }
    )


def test_an_operator_fits_only_if_one_node_holds_all_of_it() -> None:
    sched = two_workers()
    assert sched.capacity.gpu_ids == ("GPU-w10", "GPU-w11", "GPU-w20", "GPU-w21")
    assert sched.lacks(Demand(cpu=1, memory_mb=256, gpus=3)) == "needs 3 GPUs; the largest node has 2"
    with pytest.raises(ValueError, match="the largest node has 2"):
        sched.submit("three", N, Demand(cpu=1, memory_mb=256, gpus=3))
    parts_apart = Scheduler(
        {
            "cores": Capacity(cpus=8, memory_mb=1024, gpu_ids=()),
            "gpus": Capacity(cpus=1, memory_mb=1024, gpu_ids=("g",)),
        }
    )
    assert parts_apart.lacks(Demand(cpu=4, memory_mb=256, gpus=1)) == (
        "needs 4 CPU cores, 256 MB of memory and 1 GPU on one node; no node has all of them"
    )
    assert parts_apart.lacks(Demand(cpu=4, memory_mb=256, gpus=0)) is None


def test_operators_spread_over_nodes_and_hold_that_nodes_gpus() -> None:
    sched = two_workers()
    for name in "abcde":
        sched.submit(name, N, ONE_GPU)
    grants = sched.take()
    assert keys(grants) == ["a", "b", "c", "d"]  # four GPUs on two nodes; e waits
    assert [grant.node for grant in grants] == ["w1", "w2", "w1", "w2"]  # the node with the most room first
    for grant in grants:
        assert grant.gpu_ids[0].startswith(f"GPU-{grant.node}")
    assert sched.free_on("w1").gpu_ids == () and sched.waiting == 1
    sched.release("c")
    (e,) = sched.take()
    assert (e.key, e.node, e.gpu_ids) == ("e", "w1", grants[2].gpu_ids)


def test_a_two_gpu_operator_waits_while_the_free_gpus_are_on_different_nodes() -> None:
    sched = two_workers()
    for name in "ab":
        sched.submit(name, N, ONE_GPU)
    sched.take()
    sched.submit("pair", N, Demand(cpu=1, memory_mb=256, gpus=2))
    assert sched.take() == [] and len(sched.free.gpu_ids) == 2  # one free on each node: not one node's pair
    (waiting,) = sched.in_order(limit=10)
    assert waiting.reason == "waits for room: needs 2 GPUs (1 free) on the node with the most room"
    sched.release("a")
    (pair,) = sched.take()
    assert pair.node == "w1" and len(pair.gpu_ids) == 2


def test_nodes_that_leave_and_come_back_change_capacity_but_keep_what_is_held() -> None:
    sched = two_workers()
    for name in "abcd":
        sched.submit(name, N, ONE_GPU)
    held = {grant.key: grant for grant in sched.take()}
    sched.set_nodes({"w2": sched.nodes["w2"]})  # w1 drained: its operators still run, it takes no more
    assert sched.capacity.gpu_ids == ("GPU-w20", "GPU-w21")
    sched.release("a")  # ends on the drained node: nothing to give back
    sched.release("b")
    assert sched.free.gpu_ids == (held["b"].gpu_ids[0],)
    sched.submit("e", N, ONE_GPU)
    sched.submit("f", N, ONE_GPU)
    assert [grant.node for grant in sched.take()] == ["w2"]
    sched.set_nodes(two_workers().nodes)  # w1 back, with c still held on it
    (f,) = sched.take()
    assert f.node == "w1" and f.gpu_ids != held["c"].gpu_ids
    assert sched.free_on("w1").gpu_ids == ()


def test_restore_holds_an_operator_on_its_node_or_says_why_not() -> None:
    sched = two_workers()
    sched.restore(Grant("a", ONE_GPU, ("GPU-w21",), node="w2"))
    assert sched.free_on("w2").gpu_ids == ("GPU-w20",)
    with pytest.raises(CannotHold, match=r"GPU ids \['GPU-w21'\] are not on this node"):
        sched.restore(Grant("b", ONE_GPU, ("GPU-w21",), node="w1"))
    with pytest.raises(CannotHold, match="node 'w3' is not among the nodes"):
        sched.restore(Grant("c", ONE_GPU, ("GPU-w30",), node="w3"))
    with pytest.raises(ValueError, match="distinct across nodes"):
        sched.set_nodes({"x": Capacity(1, 1, ("g",)), "y": Capacity(1, 1, ("g",))})


# --- the queue as people see it ----------------------------------------------------------------------------


def submit_mix(sched: Scheduler, clock: FakeClock) -> None:
    """Twelve operators of every class, submitted a second apart, oldest LOWER first."""
    for i, priority in enumerate([L, L, N, H, N, H, L, IMM, N, H, IMM, L]):
        sched.submit(f"{priority.name.lower()}-{i}", priority, SMALL)
        clock.advance(1)


def test_in_order_is_the_order_operators_start_in() -> None:
    waiting, waiting_clock = scheduler(cpus=1)
    waiting.submit("running", N, SMALL)
    waiting.take()  # the one core is held: nothing more fits, all wait
    submit_mix(waiting, waiting_clock)
    ample, ample_clock = scheduler(cpus=100)
    ample.submit("running", N, SMALL)
    ample.take()  # the same shares so far
    ample_clock.now = waiting_clock.now - 12
    submit_mix(ample, ample_clock)

    shown = waiting.in_order(limit=100)
    assert [view.key for view in shown] == keys(ample.take())  # the simulated shares are the real ones
    assert shown[0].key == "immediate-7" and shown[-1].priority is L
    assert {view.reason for view in shown} == {"waits for room: needs 1 CPU core (0 free)"}
    assert [view.key for view in waiting.in_order(limit=3)] == [view.key for view in shown[:3]]
    assert waiting.waiting == 12  # read-only: nothing was taken or reordered
    assert [view.key for view in waiting.in_order(limit=100)] == [view.key for view in shown]


def test_in_order_names_the_reservation_an_aged_operator_holds() -> None:
    sched, clock = scheduler(gpus=2, ageing_s=10)
    sched.submit("holder", N, ONE_GPU)
    sched.take()
    sched.submit("big", N, Demand(cpu=1, memory_mb=256, gpus=2))
    clock.advance(11)  # big has aged: it holds a reservation
    sched.submit("small", N, SMALL)
    assert sched.take() == []  # small fits, but waits behind the reservation
    big, small = sched.in_order(limit=10)
    assert (big.key, big.reason) == ("big", "waits for room: needs 2 GPUs (1 free)")
    assert (small.key, small.reason) == (
        "small",
        "waits behind 'big', which has waited long enough to hold a reservation",
    )
