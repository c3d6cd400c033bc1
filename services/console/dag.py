"""A job's DAG as an SVG picture: Graphviz's ``dot`` lays it out (a maintained layout engine, run as a
program: no JavaScript layout library ships with the console), each operator filled by its status."""

from __future__ import annotations

import asyncio
import re

from claret.records import Job, OperatorStatus

STATUS_COLOURS = {
    OperatorStatus.PENDING: "#d9d9d9",
    OperatorStatus.RUNNING: "#6fa8dc",
    OperatorStatus.COMPLETED: "#93c47d",
    OperatorStatus.FAULTED: "#e06666",
}
"""Fill colours by operator status; the status is also in each node's ``data-status`` and its tooltip."""
UNKNOWN_COLOUR = "#ffffff"
DOT_TIMEOUT_S = 10.0


def dot_source(job: Job) -> str:
    """The job's DAG in Graphviz's language: operators top to bottom, an arrow from each upstream operator
    (solid: its outputs are read; dashed: only order)."""
    status = {operator.name: operator.status for operator in job.operators}
    lines = [
        "digraph job {",
        '  graph [rankdir=TB, bgcolor="transparent"];',
        '  node [shape=box, style="rounded,filled", fontname="sans-serif"];',
    ]
    for node in job.dag:
        state = status.get(node.name)
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


async def svg(job: Job) -> str:
    """The DAG drawn by ``dot -Tsvg``, without the XML prologue (it goes inside a page); empty where Graphviz
    is not installed (the page lists the operators anyway)."""
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
        drawn, problem = await process.communicate(dot_source(job).encode())
    if process.returncode != 0:
        raise RuntimeError(f"dot failed: {problem.decode(errors='replace').strip()}")
    text = drawn.decode()
    return text[text.index("<svg") :]


def _quoted(text: str) -> str:
    """A Graphviz double-quoted string: operator names are the pipeline author's, hostile until quoted."""
    return '"' + re.sub(r'(["\\])', r"\\\1", text).replace("\n", " ") + '"'
