"""The model's helpers: DAG queries, payload sub-paths, container references; and the dag module."""

from __future__ import annotations

import pytest

from shared.pipeline_definition import Container, Operator, OperatorInput, OperatorOutput, Pipeline
from shared.pipeline_definition.dag import downstream, find_cycle, topological_order


def op(name: str, *upstream: str) -> Operator:
    return Operator(name, "", Container("img"), upstream=upstream)


def diamond() -> Pipeline:
    """Declared out of data-flow order on purpose: d <- (b, c) <- a, plus an independent root e."""
    return Pipeline("0.4.0", "diamond", operators=(op("d", "b", "c"), op("c", "a"), op("a"), op("b", "a"), op("e")))


def test_roots_downstream_and_order() -> None:
    pipeline = diamond()
    assert pipeline.roots() == ("a", "e")
    assert pipeline.downstream("A") == ("c", "b")
    assert pipeline.downstream("d") == ()
    assert pipeline.topological_order() == ("a", "c", "b", "d", "e")


def test_operator_lookup_is_case_insensitive() -> None:
    assert diamond().operator("D").name == "d"
    with pytest.raises(KeyError):
        diamond().operator("z")


def test_cycles() -> None:
    graph = {"x": ("z",), "y": ("x",), "z": ("y",), "w": ("z",)}
    assert find_cycle(graph) == ("x", "y", "z", "x")
    with pytest.raises(ValueError, match="cycle"):
        topological_order(graph)
    assert find_cycle({"a": (), "b": ("a",)}) is None
    assert downstream(graph, "z") == ("x", "w")


def test_payload_subpaths() -> None:
    assert OperatorInput(path="/in").payload_subpath == "input"
    assert OperatorInput(path="/in", from_operator="a").payload_subpath == "operators/a"
    assert OperatorInput(from_operator="a", output_name="n").payload_subpath == "operators/a/n"
    assert OperatorOutput(path="/out").payload_subpath("b") == "operators/b"
    assert OperatorOutput(name="n").payload_subpath("b") == "operators/b/n"


def test_container_reference() -> None:
    assert Container("clara/x").reference == "clara/x:latest"
    assert Container("clara/x", "1.0").reference == "clara/x:1.0"
    assert Container("clara/x@sha256:abc").reference == "clara/x@sha256:abc"


def test_model_is_frozen_and_hashable() -> None:
    pipeline = diamond()
    with pytest.raises(AttributeError):
        pipeline.name = "other"  # type: ignore[misc]
    assert hash(pipeline) == hash(diamond())
