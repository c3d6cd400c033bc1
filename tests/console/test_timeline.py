"""The job page's timeline drawn without a browser: bars where the times say, a running operator up to now,
a waiting one without a bar, rows in DAG order, names escaped, colours those of the DAG."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from claret.records import JobDagNode, Operator, OperatorStatus
from services.console import dag, timeline
from services.console.timeline import PLOT_LEFT, PLOT_RIGHT

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
CSS = Path(timeline.__file__).parent / "static" / "console.css"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def drawn(operators: list[Operator], now: datetime) -> ET.Element:
    """The SVG parsed (so it must be well-formed XML: it goes inline into the page)."""
    return ET.fromstring(str(timeline.svg(operators, now)).replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))


def rows(svg: ET.Element) -> dict[str, ET.Element]:
    return {row.attrib["data-operator"]: row for row in svg.iter(f"{SVG}g")}


def bar(row: ET.Element) -> tuple[float, float, set[str]]:
    """A row's bar: its left and right x, and its classes."""
    rect = row.find(f"{SVG}rect")
    assert rect is not None
    left = float(rect.attrib["x"])
    return left, left + float(rect.attrib["width"]), set(rect.attrib["class"].split())


def status_text(row: ET.Element) -> str:
    return next(t.text or "" for t in row.iter(f"{SVG}text") if t.attrib["class"] == "when")


def test_bars_are_placed_in_proportion_to_the_times() -> None:
    svg = drawn(
        [
            Operator("copier", OperatorStatus.COMPLETED, started=at(0), stopped=at(10)),
            Operator("shouter", OperatorStatus.FAULTED, started=at(10), stopped=at(30)),
            Operator("late", OperatorStatus.COMPLETED, started=at(15), stopped=at(18)),
        ],
        now=at(500),  # ignored: everything stopped
    )
    shown = rows(svg)
    assert list(shown) == ["copier", "shouter", "late"]  # in the order given
    copier, shouter, late = (bar(shown[name]) for name in shown)
    per_second = (PLOT_RIGHT - PLOT_LEFT) / 30  # the axis ends at the last stop, a whole number of 5 s steps
    assert copier[:2] == pytest.approx((PLOT_LEFT, PLOT_LEFT + 10 * per_second), abs=0.1)
    assert shouter[:2] == pytest.approx((PLOT_LEFT + 10 * per_second, PLOT_RIGHT), abs=0.1)
    assert late[:2] == pytest.approx((PLOT_LEFT + 15 * per_second, PLOT_LEFT + 18 * per_second), abs=0.1)
    assert {"bar-COMPLETED"} < copier[2] and {"bar-FAULTED"} < shouter[2]
    assert "running" not in copier[2] | shouter[2]
    assert status_text(shown["copier"]) == "completed 10.0 s"
    assert status_text(shown["shouter"]) == "faulted 20.0 s"
    ticks = [t.text for t in svg.iter(f"{SVG}text") if t.attrib["class"] == "tick-label"]
    assert ticks == ["0 s", "5 s", "10 s", "15 s", "20 s", "25 s", "30 s"]
    label = svg.attrib["aria-label"]
    assert "copier completed, from 0.0 s to 10.0 s" in label and "late completed, from 15.0 s to 18.0 s" in label
    assert svg.attrib["role"] == "img" and svg.find(f"{SVG}title") is not None


def test_a_running_operator_ends_at_now_and_one_not_started_keeps_its_row_waiting() -> None:
    svg = drawn(
        [
            Operator("first", OperatorStatus.COMPLETED, started=at(2), stopped=at(6)),
            Operator("second", OperatorStatus.RUNNING, started=at(6)),
            Operator("third", OperatorStatus.PENDING),
        ],
        now=at(12),
    )
    shown = rows(svg)
    per_second = (PLOT_RIGHT - PLOT_LEFT) / 10  # 10 s since the first start, in steps of 2 s
    assert bar(shown["first"])[:2] == pytest.approx((PLOT_LEFT, PLOT_LEFT + 4 * per_second), abs=0.1)
    left, right, classes = bar(shown["second"])
    assert (left, right) == pytest.approx((PLOT_LEFT + 4 * per_second, PLOT_RIGHT), abs=0.1)  # up to now
    assert {"bar-RUNNING", "running"} <= classes
    assert status_text(shown["second"]) == "running 6.0 s"
    assert shown["third"].find(f"{SVG}rect") is None
    assert status_text(shown["third"]) == "waiting"
    assert "third waiting" in svg.attrib["aria-label"]
    assert "second running since 4.0 s" in svg.attrib["aria-label"]


def test_with_nothing_started_every_row_waits() -> None:
    svg = drawn([Operator("a", OperatorStatus.PENDING), Operator("b", OperatorStatus.PENDING)], now=at(0))
    assert svg.find(f".//{SVG}rect") is None
    assert [status_text(row) for row in rows(svg).values()] == ["waiting", "waiting"]


def test_the_axis_steps_are_round_and_long_jobs_count_minutes() -> None:
    assert timeline.axis(0) == timeline.Axis(1, 1)
    assert timeline.axis(7.5) == timeline.Axis(8, 2)
    assert timeline.axis(13) == timeline.Axis(15, 5)
    long = timeline.axis(13 * 60)
    assert (long.end, long.step) == (15 * 60, 5 * 60)
    assert [long.label(t) for t in long.ticks()] == ["0 min", "5 min", "10 min", "15 min"]
    assert timeline.axis(30 * 3600).label(10 * 3600) == "10 h"


def test_rows_follow_the_dag_upstream_first() -> None:
    operators = [
        Operator("report", OperatorStatus.PENDING),
        Operator("stray", OperatorStatus.PENDING),
        Operator("segment", OperatorStatus.PENDING),
        Operator("load", OperatorStatus.PENDING),
    ]
    nodes = [
        JobDagNode("report", order_dependencies=("segment",)),
        JobDagNode("segment", input_dependencies=("load",)),
        JobDagNode("load"),
    ]
    assert [op.name for op in timeline.dag_order(operators, nodes)] == ["load", "segment", "report", "stray"]


def test_names_are_escaped_and_long_ones_cut() -> None:
    hostile = '<script>alert("x")</script>&' + "y" * 30
    text = str(timeline.svg([Operator(hostile, OperatorStatus.RUNNING, started=at(0))], now=at(1)))
    assert "<script>" not in text
    row = rows(drawn([Operator(hostile, OperatorStatus.RUNNING, started=at(0))], now=at(1)))[hostile]
    name = next(t.text or "" for t in row.iter(f"{SVG}text") if t.attrib["class"] == "name")
    assert name.endswith("…") and len(name) == timeline.NAME_CHARS
    assert (row.findtext(f"{SVG}title") or "").startswith(hostile)  # whole in the tooltip


def test_bars_are_coloured_as_the_dag_colours_its_nodes() -> None:
    css = CSS.read_text(encoding="utf-8")
    for status, colour in dag.STATUS_COLOURS.items():
        assert re.search(rf"\.timeline \.bar-{status.name} \{{ fill: {colour}; \}}", css), status
