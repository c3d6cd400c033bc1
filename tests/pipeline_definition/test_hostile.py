"""Hostile or odd input: every one fails fast with a ClaretError, never another exception."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.errors import ClaretError
from shared.pipeline_definition import DefinitionFile, limits, load_pipeline

from .test_support import LOAD, VARIABLES, base, dump, files, load

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
api-version: 0.4.0
name: lol
operators: *i
"""


def refused_fast(content: str, *fragments: str) -> ClaretError:
    started = time.monotonic()
    with pytest.raises(ClaretError) as caught:
        load_pipeline(files(content))
    assert time.monotonic() - started < 2
    assert caught.value.code == LOAD, caught.value.messages
    assert any(all(f in message for f in fragments) for message in caught.value.messages), caught.value.messages
    return caught.value


def test_billion_laughs_is_refused() -> None:
    refused_fast(BILLION_LAUGHS, "pipeline.yaml: invalid YAML", "nodes once aliases are expanded")


def test_many_aliases_are_refused() -> None:
    refused_fast("a: &a x\nb: [" + ", ".join(["*a"] * (limits.MAX_ALIASES + 1)) + "]\n", "more than 500 aliases")


def test_few_aliases_are_fine() -> None:
    text = """\
        api-version: 0.4.0
        name: anchors
        operators:
          - name: a
            container: &shared {image: clara/common, tag: "1"}
            input: [{path: /in}]
            output: [{path: /out}]
          - name: b
            container: *shared
            input: [{from: a, path: /in}]
    """
    assert load(text).operator("b").container.reference == "clara/common:1"


def test_recursive_alias_is_refused() -> None:
    refused_fast("a: &a [*a]\n", "recursive alias")
    refused_fast("a: &a {b: *a}\n", "recursive alias")


def test_deep_nesting_is_refused() -> None:
    refused_fast("a: " + "[" * 5000 + "]" * 5000 + "\n", "nest")
    refused_fast("a: " + "[" * 100 + "]" * 100 + "\n", "nested deeper than 64")
    refused_fast("a: " + "{b: " * 200 + "1" + "}" * 200 + "\n", "nested deeper")


def test_large_files_are_refused() -> None:
    refused_fast("a: " + "x" * limits.MAX_FILE_BYTES, "larger than")
    refused_fast("a: " + "é" * (limits.MAX_FILE_BYTES // 2 + 1), "larger than")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("a: 1\n---\nb: 2\n", "expected a single document"),
        ("a: !!python/object:os.system x\n", "could not determine a constructor"),
        ("? [a, b]\n: 1\n", "unhashable"),
        ("a: \x00\n", "invalid YAML"),
        ("a: b: c\n", "line 1"),
        ("a: \ud800\n", "not valid Unicode text"),
        ("", "expected a mapping document, got nothing"),
        ("- 1\n", "got a list"),
        ("just text", "got a string"),
        ("a: 1\nb: *missing\n", "undefined alias"),
    ],
)
def test_unreadable_documents_are_load_errors(content: str, fragment: str) -> None:
    refused_fast(content, "pipeline.yaml", fragment)


@pytest.mark.parametrize(
    "content",
    [
        "api-version: 0.4.0\nname: x\noperators: !!set {a, b}\n",
        "api-version: 0.4.0\nname: x\noperators: [!!binary aGVsbG8=]\n",
        "api-version: 0.4.0\nname: x\noperators: !!omap [{a: 1}]\n",
        "api-version: 0.4.0\nname: x\noperators: [{name: a, container: {image: !!set {x}}}]\n",
        "api-version: !!float .nan\nname: x\noperators: [{}]\n",
        "api-version: 0.4.0\nname: .inf\noperators: [{name: 1, container: {image: x}, requests: {cpu: .inf}}]\n",
        "api-version: 0.4.0\nname: x\n1: 2\n? !!null\n: 3\noperators: [{name: a, variables: {1: 2}}]\n",
        "api-version: 0.4.0\nname: x\nparameters: [a]\noperators: [{name: a, container: {image: b}}]\n",
    ],
)
def test_strange_types_are_claret_errors(content: str) -> None:
    with pytest.raises(ClaretError) as caught:
        load_pipeline(files(content))
    assert caught.value.messages
    assert not any("unexpected error" in message for message in caught.value.messages)


@pytest.mark.parametrize(
    "bad_files",
    [
        [DefinitionFile("p.yaml", b"bytes")],  # type: ignore[arg-type]
        [DefinitionFile(None, "a: 1")],  # type: ignore[arg-type]
        [object()],
        None,
        [1, 2],
    ],
)
def test_bad_file_lists_are_load_errors(bad_files: Any) -> None:
    with pytest.raises(ClaretError) as caught:
        load_pipeline(bad_files)
    assert caught.value.code == LOAD


def test_bad_arguments_are_invalid_variables() -> None:
    with pytest.raises(ClaretError) as caught:
        load_pipeline(files(dump(base())), {"x": 1})  # type: ignore[dict-item]
    assert caught.value.code == VARIABLES
