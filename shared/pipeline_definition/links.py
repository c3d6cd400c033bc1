"""Rules across operators: unique names, ``from``/``name`` references, typed matches, and the DAG."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from shared.pipeline_definition import dag
from shared.pipeline_definition.model import Operator, OperatorInput, OperatorOutput
from shared.pipeline_definition.operators import Draft
from shared.pipeline_definition.problems import Problems, Where
from shared.pipeline_definition.typed_io import Typing, mismatch


def link(drafts: Sequence[Draft], problems: Problems, where: Where) -> tuple[Operator, ...]:
    """Resolve every input against the other operators and fill in ``upstream``; ``where`` locates the list."""
    by_name: dict[str, Draft] = {}
    for draft in drafts:
        first = by_name.setdefault(draft.operator.name.casefold(), draft)
        if first is not draft:
            problems.invalid(draft.name_at, f"operator name {draft.operator.name!r} is used twice")
    operators = tuple(_link_operator(draft, by_name, problems) for draft in drafts)
    cycle = dag.find_cycle({op.name: op.upstream for op in operators})
    if cycle is not None:
        problems.invalid(where, f"operators form a cycle: {' -> '.join(cycle)}")
    return operators


def _link_operator(draft: Draft, by_name: dict[str, Draft], problems: Problems) -> Operator:
    inputs = tuple(
        _link_input(entry, at, draft, by_name, problems)
        for entry, at in zip(draft.operator.inputs, draft.input_at, strict=True)
    )
    upstream = (entry.from_operator for entry in inputs if entry.from_operator is not None)
    return replace(draft.operator, inputs=inputs, upstream=tuple(dict.fromkeys(upstream)))


def _link_input(
    entry: OperatorInput, at: Where, owner: Draft, by_name: dict[str, Draft], problems: Problems
) -> OperatorInput:
    """The input with ``from``/``name`` in the upstream's spelling; ``from`` None when it cannot resolve."""
    if entry.from_operator is None:
        return entry
    upstream = by_name.get(entry.from_operator.casefold())
    if upstream is None:
        problems.invalid(at.at("from"), f"no operator named {entry.from_operator!r}")
        return replace(entry, from_operator=None)
    if upstream is owner:
        problems.invalid(at.at("from"), "an operator cannot take its own output as input")
        return replace(entry, from_operator=None)
    output = _pick_output(entry, at, upstream.operator, problems)
    if output is None:
        return replace(entry, from_operator=upstream.operator.name)
    why = mismatch(_typing(output), _typing(entry))
    if why is not None:
        source = f"output {output.name!r}" if output.name else "the output"
        problems.invalid(at.at("type"), f"{why} ({source} of {upstream.operator.name!r})")
    return replace(entry, from_operator=upstream.operator.name, output_name=output.name)


def _pick_output(entry: OperatorInput, at: Where, upstream: Operator, problems: Problems) -> OperatorOutput | None:
    """The upstream output this input reads: the one named, or the only one."""
    outputs = upstream.outputs
    if entry.output_name is not None:
        wanted = entry.output_name.casefold()
        found = next((out for out in outputs if out.name is not None and out.name.casefold() == wanted), None)
        if found is None:
            problems.invalid(at.at("name"), f"operator {upstream.name!r} has no output named {entry.output_name!r}")
        return found
    if len(outputs) == 1:
        return outputs[0]
    if not outputs:
        problems.invalid(at.at("from"), f"operator {upstream.name!r} declares no output")
    else:
        problems.invalid(at.at("name"), f"is required: operator {upstream.name!r} has {len(outputs)} outputs")
    return None


def _typing(entry: OperatorInput | OperatorOutput) -> Typing:
    return Typing(entry.type, entry.element_type, entry.shape)
