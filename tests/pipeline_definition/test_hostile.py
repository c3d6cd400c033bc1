"""Hostile or odd input: every one fails fast with a ClaretError, never another exception."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.errors import ClaretError
from shared.pipeline_definition import DefinitionFile, limits, load_pipeline

from .test_support import DEFINITION, LOAD, VARIABLES, base, dump, edited, files, load, refused

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


# Container paths and payload folders: definition values that end up as filesystem paths on the host.
# An input/output ``path`` is created as a mount point by the runtime (``/../oldroot/...`` once made it run
# ``mkdir -p`` on the host, outside the payload); operator, output and ``from`` names become payload folders.

CLIMBING = ["/..", "/../", "/a/..", "/a/../b", "/../oldroot/tmp/x/a", "/a/./../..", "//..//x", "/a/b/../../../c"]
IO_PATHS = [("input", "operators.1.input.0.path"), ("output", "operators.1.output.1.path")]


@pytest.mark.parametrize("path", CLIMBING)
@pytest.mark.parametrize(("kind", "dotted"), IO_PATHS, ids=[kind for kind, _ in IO_PATHS])
def test_paths_with_a_dotdot_segment_are_refused(kind: str, dotted: str, path: str) -> None:
    index = dotted.split(".")[-2]
    refused(
        DEFINITION,
        edited(base(), (dotted, path)),
        f"pipeline.yaml: operator 'seg': {kind}[{index}].path: {path!r} must not contain a '..' segment",
    )


@pytest.mark.parametrize(("kind", "dotted"), IO_PATHS, ids=[kind for kind, _ in IO_PATHS])
def test_paths_with_nul_are_refused(kind: str, dotted: str) -> None:
    refused(DEFINITION, edited(base(), (dotted, "/in\x00/x")), f"operator 'seg': {kind}", "'/in\\x00/x'", "NUL")


@pytest.mark.parametrize("version", ["0.4.0", "0.5.0"])
def test_typed_and_untyped_paths_follow_the_same_rule(version: str) -> None:
    stream = {"name": "s", "type": "stream", "element-type": "dicom", "path": "/s/.."}
    document = edited(base(version), ("operators.0.output.0", stream), ("operators.1.input.0.name", "s"))
    if version == "0.4.0":  # typed attributes are ignored before 0.5.0, the path is not
        document["operators"][0]["output"][0].pop("type")
        document["operators"][0]["output"][0].pop("element-type")
    refused(DEFINITION, document, "operator 'reader': output[0].path", "'/s/..'", "'..' segment")


@pytest.mark.parametrize("path", ["/a//b", "/a/", "//a", "/a..b/..c", "/.../x", "/a/./b", "/.a/b.."])
def test_paths_without_a_dotdot_segment_stay_accepted(path: str) -> None:
    pipeline = load(edited(base(), ("operators.1.output.1.path", path), ("operators.1.input.0.path", path + "x")))
    seg = pipeline.operator("seg")
    assert (seg.inputs[0].path, seg.outputs[1].path) == (path + "x", path)


def test_template_arguments_cannot_make_a_path_climb() -> None:
    text = dump(edited(base(), ("parameters", {"SUB": "data"}), ("operators.1.input.0.path", "/in/${{ SUB }}")))
    assert load(text).operator("seg").inputs[0].path == "/in/data"
    refused(
        DEFINITION, text, "input[0].path", "'/in/../../oldroot' must not contain", arguments={"SUB": "../../oldroot"}
    )


def test_import_args_cannot_make_a_path_climb() -> None:
    worker = """\
        name: worker
        parameters: {dir: out}
        container: {image: worker}
        input: [{from: reader, path: /in}]
        output: [{path: "/${{dir}}"}]
    """
    main = dump(edited(base(), ("operators.1", {"import": {"path": "worker.yaml", "args": {"dir": ".."}}})))
    refused(DEFINITION, main, "worker.yaml: operator 'worker': output[0].path", "'/..'", extra={"worker.yaml": worker})


NAMES = [
    ("operator name", "operators.1.name", "operators[1]: name"),
    ("output name", "operators.1.output.0.name", "output[0].name"),
    ("input from", "operators.1.input.0.from", "input[0].from"),
    ("input name", "operators.1.input.0.name", "input[0].name"),
    ("service name", "operators.1.services", "services[0].name"),
]


@pytest.mark.parametrize("value", ["..", ".", "../reader", "a/b", "/abs", "a\\b", "reader/../x", "a\x00"])
@pytest.mark.parametrize(("field", "dotted", "where"), NAMES, ids=[field for field, _, _ in NAMES])
def test_names_that_become_payload_folders_cannot_hold_a_path(field: str, dotted: str, where: str, value: str) -> None:
    """Operator and output names (and the ``from``/``name`` that refer to them) become payload folders
    (``operators/<operator>/<output>``); a name is ``A-Z a-z 0-9 _ -`` only, so no folder can leave the payload."""
    if field == "service name":
        edit: tuple[str, Any] = (dotted, [{"name": value, "container": {"image": "svc"}}])
    else:
        edit = (dotted, value)
    refused(DEFINITION, edited(base(), edit), where, f"{value!r} is not a valid name")


def test_loaded_payload_folders_stay_under_the_payload() -> None:
    pipeline = load(edited(base(), ("operators.1.input.1", {"from": "Reader", "path": "/again"})))
    seg = pipeline.operator("seg")
    folders = [i.payload_subpath for i in seg.inputs] + [o.payload_subpath(seg.name) for o in seg.outputs]
    assert folders == ["operators/reader", "operators/reader", "operators/seg/mask", "operators/seg/render"]
