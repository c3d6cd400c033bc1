"""A job's or a pipeline's DAG as an SVG picture: Graphviz's ``dot`` lays it out (a maintained layout engine,
run as a program: no JavaScript layout library ships with the console), each of a job's operators filled by
its status."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping, Sequence

from claret.records import Job, JobDagNode, OperatorStatus, PipelineNode

STATUS_COLOURS = {
    OperatorStatus.PENDING: "#d9d9d9",
    OperatorStatus.RUNNING: "#6fa8dc",
    OperatorStatus.COMPLETED: "#93c47d",
    OperatorStatus.FAULTED: "#e06666",
}
"""Fill colours by operator status; the status is also in each node's ``data-status`` and its tooltip."""
UNKNOWN_COLOUR = "#ffffff"
DOT_TIMEOUT_S = 10.0
DRAWN_KEPT = 256
"""Pictures remembered by their dot source (which holds the statuses): ``dot`` runs once per change."""
_drawn: dict[str, str] = {}


def dot_source(nodes: Sequence[JobDagNode], statuses: Mapping[str, OperatorStatus] | None = None) -> str:
    """The DAG in Graphviz's language: operators top to bottom, an arrow from each upstream operator (solid:
    its outputs are read; dashed: only order). With ``statuses`` (a job's) each operator is filled by its
    status; without (a pipeline's) the operators have none."""
    lines = [
        "digraph job {",
        '  graph [rankdir=TB, bgcolor="transparent"];',
        '  node [shape=box, style="rounded,filled", fontname="sans-serif"];',
    ]
    for node in nodes:
        if statuses is None:
            attributes = {"fillcolor": UNKNOWN_COLOUR, "id": f"op-{node.name}", "class": "OPERATOR"}
            attributes["tooltip"] = node.name
        else:
            state = statuses.get(node.name)
            label = state.name if state is not None else "UNKNOWN"
            attributes = {
                "fillcolor": STATUS_COLOURS.get(state, UNKNOWN_COLOUR) if state is not None else UNKNOWN_COLOUR,
                "id": f"op-{node.name}",
                "class": label,
                "tooltip": f"{node.name}: {label}",
            }
        listed = ", ".join(f"{key}={_quoted(value)}" for key, value in attributes.items())
        lines.append(f"  {_quoted(node.name)} [{listed}];")
        lines.extend(f"  {_quoted(up)} -> {_quoted(node.name)};" for up in node.input_dependencies)
        lines.extend(f"  {_quoted(up)} -> {_quoted(node.name)} [style=dashed];" for up in node.order_dependencies)
    lines.append("}")
    return "\n".join(lines)


def job_source(job: Job) -> str:
    """A job's DAG, each operator by its status."""
    return dot_source(job.dag, {operator.name: operator.status for operator in job.operators})


def pipeline_nodes(roots: Iterable[PipelineNode]) -> list[JobDagNode]:
    """A pipeline's DAG (a tree of each operator and those that run after it, where an operator with two
    upstreams appears under both) as nodes with their upstream operators, each once, in the order met."""
    upstreams: dict[str, list[str]] = {}

    def visit(node: PipelineNode, parent: str | None) -> None:
        ups = upstreams.setdefault(node.name, [])
        if parent is not None and parent not in ups:
            ups.append(parent)
        for child in node.next:
            visit(child, node.name)

    for root in roots:
        visit(root, None)
    return [JobDagNode(name, tuple(ups)) for name, ups in upstreams.items()]


async def svg(source: str) -> str:
    """:func:`draw`, remembered: a job page asks every second, and its picture changes only with a status."""
    if source not in _drawn:
        if len(_drawn) >= DRAWN_KEPT:
            _drawn.pop(next(iter(_drawn)))  # the oldest
        _drawn[source] = await draw(source)
    return _drawn[source]


async def draw(source: str) -> str:
    """A DAG's ``source`` (from :func:`dot_source`) drawn by ``dot -Tsvg``, without the XML prologue (it goes
    inside a page); empty where Graphviz is not installed (the page lists the operators anyway)."""
    try:
        process = await asyncio.create_subprocess_exec(
            "dot",
            "-Tsvg",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        return ""
    async with asyncio.timeout(DOT_TIMEOUT_S):
        drawn, problem = await process.communicate(source.encode())
    if process.returncode != 0:
        raise RuntimeError(f"dot failed: {problem.decode(errors='replace').strip()}")
    text = drawn.decode()
    return text[text.index("<svg") :]


def _quoted(text: str) -> str:
    """A Graphviz double-quoted string: operator names are the pipeline author's, hostile until quoted."""
    return '"' + re.sub(r'(["\\])', r"\\\1", text).replace("\n", " ") + '"'
