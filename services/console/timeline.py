"""A job's timeline: one bar per operator from its start to its stop, drawn on the server as inline SVG.

The table of operators gives their times to the second; the timeline shows at a glance what ran in
parallel, what waited and what took long. Like the GPU graphs (``gpus.py``) it is plain SVG coloured by
classes of ``console.css``: the CSP allows no inline script or style, and no layout library ships with the
console. It is part of the job page's live part, so a running job's bars grow with each refresh.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

from claret.output import duration
from claret.records import JobDagNode, Operator, OperatorStatus

WIDTH = 690
"""The SVG's width in its own units; the page scales it to the room it has."""
NAME_RIGHT = 152
"""Where the operators' names end (right-aligned); the plot starts just after."""
PLOT_LEFT, PLOT_RIGHT = 160, 530
"""The time axis spans these x coordinates: 0 s at the left, the axis' end at the right."""
STATUS_LEFT = 540
"""Where each row's status and duration start: the bars' colours are not the only key."""
ROW_HEIGHT, BAR_HEIGHT, TOP = 22, 14, 6
AXIS_HEIGHT = 22
"""Room under the rows for the ticks' labels."""
MIN_BAR = 1.5
"""A bar too short to see at the axis' scale is drawn this wide: it ran, however briefly."""
NAME_CHARS = 22
"""Longer names are cut with an ellipsis (the row's tooltip has them whole): SVG text does not wrap."""
TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
"""Round steps between ticks, in seconds; the smallest giving at most :data:`MAX_TICKS` intervals is used."""
MAX_TICKS = 6


@dataclass(frozen=True)
class Axis:
    """The time axis: seconds from the first start to its ``end``, a tick every ``step``."""

    end: float
    step: float

    def x(self, seconds: float) -> float:
        """Where ``seconds`` after the first start falls: proportional to time, clamped to the axis."""
        return PLOT_LEFT + max(0.0, min(1.0, seconds / self.end)) * (PLOT_RIGHT - PLOT_LEFT)

    def ticks(self) -> list[float]:
        return [i * self.step for i in range(round(self.end / self.step) + 1)]

    def label(self, seconds: float) -> str:
        """A tick's label in the step's unit, so all read alike: "30 s", "4 min", "2 h"."""
        if self.step < 60:
            return f"{seconds:g} s"
        if self.step < 3600:
            return f"{seconds / 60:g} min"
        return f"{seconds / 3600:g} h"


def axis(span_s: float) -> Axis:
    """An axis covering ``span_s`` seconds, ending at a whole number of round steps (so it grows by steps
    while a job runs instead of rescaling every second)."""
    span_s = max(span_s, 0.0)
    step = next((float(s) for s in TICK_STEPS_S if span_s <= s * MAX_TICKS), None)
    if step is None:
        step = math.ceil(span_s / MAX_TICKS / TICK_STEPS_S[-1]) * float(TICK_STEPS_S[-1])
    return Axis(max(math.ceil(span_s / step), 1) * step, step)


def dag_order(operators: Iterable[Operator], dag: Sequence[JobDagNode]) -> list[Operator]:
    """The operators each after its upstream operators (the DAG's order: what runs first is on top), ties in
    the order the DAG lists them; operators the DAG does not name come last, as listed."""
    by_name = {operator.name: operator for operator in operators}
    listed = {node.name for node in dag}
    upstreams = {node.name: {*node.input_dependencies, *node.order_dependencies} & listed for node in dag}
    ordered: dict[str, None] = {}  # a set that keeps its order
    while len(ordered) < len(upstreams):
        left = [name for name in upstreams if name not in ordered]
        ready = next((name for name in left if upstreams[name] <= ordered.keys()), left[0])  # a cycle: as listed
        ordered[ready] = None
    placed = [by_name[name] for name in ordered if name in by_name]
    return placed + [operator for name, operator in by_name.items() if name not in upstreams]


def svg(operators: Sequence[Operator], now: datetime) -> Markup:
    """The operators' timeline as an SVG element, a row each in the order given: a bar from its start to its
    stop, or to ``now`` while it has not stopped (drawn as running); none for one not started yet, whose row
    says "waiting". Bars are classed by status (``bar-RUNNING``...) and time runs from the first start."""
    starts = [op.started for op in operators if op.started is not None]
    first = min(starts) if starts else now
    ends = [_end(op, now) for op in operators if op.started is not None]
    scale = axis(max(((end - first).total_seconds() for end in ends), default=0.0))
    height = TOP + ROW_HEIGHT * len(operators) + AXIS_HEIGHT
    bottom = TOP + ROW_HEIGHT * len(operators)
    label = escape(_summary(operators, first, now))
    parts = [
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{label}">',
        "<title>When each operator ran, in seconds since the job's first start</title>",
    ]
    for tick in scale.ticks():
        x = _n(scale.x(tick))
        parts.append(f'<line class="tick" x1="{x}" y1="{TOP}" x2="{x}" y2="{bottom + 4}"/>')
        parts.append(f'<text class="tick-label" x="{x}" y="{bottom + 17}">{escape(scale.label(tick))}</text>')
    parts.append(f'<line class="axis" x1="{PLOT_LEFT}" y1="{bottom}" x2="{PLOT_RIGHT}" y2="{bottom}"/>')
    for row, op in enumerate(operators):
        y = TOP + row * ROW_HEIGHT
        text_y = _n(y + ROW_HEIGHT / 2 + 4)
        parts.append(f'<g class="row" data-operator="{escape(op.name)}">')
        parts.append(f"<title>{escape(op.name)}: {escape(_words(op, first, now))}</title>")
        parts.append(f'<text class="name" x="{NAME_RIGHT}" y="{text_y}">{escape(_cut(op.name))}</text>')
        if op.started is not None:
            left = scale.x((op.started - first).total_seconds())
            right = scale.x((_end(op, now) - first).total_seconds())
            classes = f"bar bar-{op.status.name}" + (" running" if op.stopped is None else "")
            bar_y = _n(y + (ROW_HEIGHT - BAR_HEIGHT) / 2)
            parts.append(
                f'<rect class="{classes}" x="{_n(left)}" y="{bar_y}" width="{_n(max(right - left, MIN_BAR))}"'
                f' height="{BAR_HEIGHT}"/>'
            )
        parts.append(f'<text class="when" x="{STATUS_LEFT}" y="{text_y}">{escape(_short(op, now))}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def _end(op: Operator, now: datetime) -> datetime:
    """Where a started operator's bar ends: its stop, or ``now`` (never before its start: clocks differ)."""
    assert op.started is not None
    return max(op.stopped or now, op.started)


def _short(op: Operator, now: datetime) -> str:
    """The row's status and how long it ran: "completed 12 s", "running 3 s", "waiting"."""
    if op.started is None:
        return "waiting" if op.stopped is None else f"{op.status.name.lower()}, not started"
    seconds = (_end(op, now) - op.started).total_seconds()
    status = "running" if op.stopped is None and op.status is OperatorStatus.RUNNING else op.status.name.lower()
    return f"{status} {_seconds(seconds)}"


def _words(op: Operator, first: datetime, now: datetime) -> str:
    """One operator in words for screen readers and tooltips: its status and when it ran."""
    if op.started is None:
        return _short(op, now)
    begin = _seconds((op.started - first).total_seconds())
    if op.stopped is None:
        return f"{op.status.name.lower()} since {begin}"
    return f"{op.status.name.lower()}, from {begin} to {_seconds((_end(op, now) - first).total_seconds())}"


def _summary(operators: Sequence[Operator], first: datetime, now: datetime) -> str:
    described = "; ".join(f"{op.name} {_words(op, first, now)}" for op in operators)
    return f"Timeline of the job's operators, in seconds since its first start: {described or 'none'}"


def _seconds(seconds: float) -> str:
    """A time for reading: tenths under a minute (operators are often that short), then "3 min 4 s"."""
    return f"{seconds:.1f} s" if seconds < 60 else duration(seconds)


def _cut(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"


def _n(value: float) -> str:
    """A coordinate, short: "12", "12.5"."""
    return f"{value:.1f}".removesuffix(".0")
