"""Helpers shared by the pipeline_definition tests (kept in a test module: the folder holds tests only)."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.errors import ClaretError, ErrorCode
from shared.pipeline_definition import DefinitionFile, Pipeline, load_pipeline

EXAMPLES = Path(__file__).parent / "examples"
LOAD = ErrorCode.PIPELINE_LOAD
DEFINITION = ErrorCode.PIPELINE_DEFINITION
VARIABLES = ErrorCode.INVALID_VARIABLES


def example(name: str) -> str:
    return (EXAMPLES / name).read_text()


def files(main: str, extra: dict[str, str] | None = None) -> list[DefinitionFile]:
    """The pipeline document (as ``pipeline.yaml``) followed by the other files, keyed by path."""
    others = [DefinitionFile(path, textwrap.dedent(text)) for path, text in (extra or {}).items()]
    return [DefinitionFile("pipeline.yaml", textwrap.dedent(main)), *others]


def load(
    main: str | dict[str, Any], extra: dict[str, str] | None = None, *, arguments: dict[str, str] | None = None
) -> Pipeline:
    """Load ``main`` (YAML text, or a document to dump) with the ``extra`` files it imports."""
    text = main if isinstance(main, str) else dump(main)
    return load_pipeline(files(text, extra), arguments)


def refused(
    code: ErrorCode,
    main: str | dict[str, Any],
    *fragments: str,
    arguments: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> ClaretError:
    """Assert the load fails with ``code`` and that one message contains every fragment."""
    with pytest.raises(ClaretError) as caught:
        load(main, extra, arguments=arguments)
    error = caught.value
    assert error.code == code, error.messages
    assert any(all(fragment in message for fragment in fragments) for message in error.messages), error.messages
    return error


def dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False)


_BASE: dict[str, Any] = {
    "api-version": "0.4.0",
    "name": "base",
    "operators": [
        {
            "name": "reader",
            "container": {"image": "clara/reader", "tag": "1"},
            "input": [{"path": "/input"}],
            "output": [{"path": "/output"}],
        },
        {
            "name": "seg",
            "container": {"image": "clara/seg"},
            "input": [{"from": "reader", "path": "/input"}],
            "output": [{"name": "mask", "path": "/mask"}, {"name": "render", "path": "/render"}],
        },
    ],
}


DELETE = object()


def edited(document: dict[str, Any], *edits: tuple[str, Any]) -> dict[str, Any]:
    """``document`` with each ``("operators.1.input.0.from", value)`` set (or removed, for DELETE)."""
    for dotted, value in edits:
        *parents, last = [int(part) if part.isdigit() else part for part in dotted.split(".")]
        target: Any = document
        for part in parents:
            target = target[part]
        if value is DELETE:
            del target[last]
        elif isinstance(target, list) and last == len(target):
            target.append(value)
        else:
            target[last] = value
    return document


def base(version: str = "0.4.0") -> dict[str, Any]:
    """A valid two-operator pipeline (reader -> seg) to mutate; a fresh copy every call."""
    document = copy.deepcopy(_BASE)
    document["api-version"] = version
    return document


def test_base_document_loads() -> None:
    assert load(base()).topological_order() == ("reader", "seg")
