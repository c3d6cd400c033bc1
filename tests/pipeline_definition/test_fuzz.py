"""Property: for any input, the loader returns a consistent Pipeline (and one-line warnings) or raises a
ClaretError with a pipeline code and messages, and nothing else escapes (random structures, mutated
examples, random text, random import graphs, random arguments)."""

from __future__ import annotations

import copy
import posixpath
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shared.errors import ClaretError, ErrorCode
from shared.pipeline_definition import DefinitionFile, Pipeline, load_definition

from .test_support import example

DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
ALLOWED = {ErrorCode.PIPELINE_DEFINITION, ErrorCode.PIPELINE_LOAD, ErrorCode.INVALID_VARIABLES}
# No deadline or health checks: generation cost varies with machine load, and a flaky health check must
# not fail the suite; no example database, so the tests leave nothing behind.
_BASE = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))


def fuzz(examples: int) -> settings:
    return settings(_BASE, max_examples=examples)


EXAMPLES = [yaml.safe_load(example(name)) for name in ("a_argo.yaml", "b_covid.yaml", "c_spleen.yaml", "d_typed.yaml")]
KEYS = [
    "api-version", "name", "description", "parameters", "operators", "pull-secrets", "timeout", "container",
    "image", "tag", "command", "input", "output", "from", "path", "type", "element-type", "shape", "requests",
    "cpu", "gpu", "memory", "variables", "services", "connections", "http", "port", "models", "import", "args",
]  # fmt: skip
WORDS = [
    "0.4.0", "0.5.0", "0.3", "1.0", "array", "stream", "string", "float32", "u8", "dicom", "/in", "/out", "in",
    "${{ p }}", "${{p}}", "${{ bad name }}", "reader", "seg", "a.yaml", "../a.yaml", "/abs.yaml", "-1", "",
]  # fmt: skip

ANY_CHARACTER = st.characters() | st.characters(codec=None, categories=["Cs", "Cc", "Zl", "Zp", "Co"])
"""Any code point, lone surrogates and control characters included."""
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(WORDS),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(-3, 3))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=12,
)


def check(files: list[DefinitionFile], arguments: dict[str, str] | None = None) -> None:
    """The property itself."""
    try:
        loaded = load_definition(files, arguments)
    except ClaretError as error:
        assert error.code in ALLOWED, error
        assert error.messages and all(isinstance(m, str) and m for m in error.messages)
        assert not any("unexpected error" in m for m in error.messages), error.messages
    else:
        event("loaded")
        consistent(loaded.pipeline)
        assert all(w.startswith("warning: ") and "\n" not in w for w in loaded.warnings), loaded.warnings


def consistent(pipeline: Pipeline) -> None:
    names = [op.name for op in pipeline.operators]
    assert sorted(pipeline.topological_order()) == sorted(names)
    position = {name: i for i, name in enumerate(pipeline.topological_order())}
    for op in pipeline.operators:
        assert all(position[up] < position[op.name] for up in op.upstream)
        assert op.container.image
        for requests in (op.requests, *(service.requests for service in op.services)):
            assert requests.cpu >= 1 and requests.memory >= 1 and requests.gpu >= 0
        paths = [entry.path for entry in (*op.inputs, *op.outputs) if entry.path is not None]
        assert all(path.startswith("/") and "\x00" not in path and ".." not in path.split("/") for path in paths)
        folders = [i.payload_subpath for i in op.inputs] + [o.payload_subpath(op.name) for o in op.outputs]
        assert all(posixpath.normpath(folder) == folder and not folder.startswith(("/", "..")) for folder in folders)
    assert 1 <= pipeline.timeout <= 1800


def dump(document: Any) -> str:
    return yaml.dump(document, Dumper=DUMPER, sort_keys=False, allow_unicode=True)


@fuzz(120)
@given(st.dictionaries(keys, values, max_size=8))
def test_random_structures(document: dict[Any, Any]) -> None:
    check([DefinitionFile("pipeline.yaml", dump(document))])


@st.composite
def _maybe(draw: st.DrawFn, proper: st.SearchStrategy[Any]) -> Any:
    """Mostly a well-typed value, sometimes any scalar (one_of would pick each about equally often)."""
    return draw(scalars if draw(st.integers(0, 7)) == 3 else proper)


_names = st.sampled_from(["a", "b", "c", "A", "..", "a/b"])
_io = st.fixed_dictionaries(
    {},
    optional={
        "from": _maybe(_names),
        "name": _maybe(_names),
        "path": _maybe(st.sampled_from(["/in", "/out", "rel", "/in/", "/in/../x", "/..", "/a\x00"])),
        "type": _maybe(st.sampled_from(["array", "string", "stream", "u8", "float64", "blob"])),
        "element-type": _maybe(st.sampled_from(["float32", "i16", "dicom"])),
        "shape": _maybe(st.lists(st.integers(-2, 4), max_size=3)),
    },
)
_operator = st.fixed_dictionaries(
    {
        "name": _maybe(_names),
        "container": _maybe(
            st.fixed_dictionaries(
                {"image": _maybe(st.sampled_from(["img", "reg/img"]))},
                optional={"tag": scalars, "command": _maybe(st.lists(scalars, max_size=3))},
            )
        ),
    },
    optional={
        "api-version": _maybe(st.sampled_from(["0.4.0", "0.5.0", "0.9"])),
        "input": _maybe(st.lists(_maybe(_io), max_size=3)),
        "output": _maybe(st.lists(_maybe(_io), max_size=3)),
        "requests": _maybe(st.dictionaries(st.sampled_from(["cpu", "gpu", "memory"]), scalars, max_size=3)),
        "variables": _maybe(st.dictionaries(st.sampled_from(["X", "Y", ""]), scalars, max_size=2)),
        "models": _maybe(st.lists(_maybe(st.fixed_dictionaries({"name": _maybe(_names)})), max_size=2)),
        "timeout": _maybe(st.integers(-1, 4000)),
        "services": _maybe(
            st.lists(
                st.fixed_dictionaries(
                    {"name": _maybe(_names), "container": st.just({"image": "svc"})},
                    optional={"connections": st.just({"http": [{"name": "URI", "port": 8000}]})},
                ),
                max_size=2,
            )
        ),
    },
)
_pipeline = st.fixed_dictionaries(
    {
        "api-version": _maybe(st.sampled_from(["0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.2"])),
        "name": _maybe(_names),
        "operators": _maybe(st.lists(_operator, min_size=1, max_size=4)),
    },
    optional={
        "timeout": _maybe(st.integers(-1, 4000)),
        "pull-secrets": _maybe(st.lists(scalars, max_size=2)),
        "parameters": _maybe(st.dictionaries(st.sampled_from(["p", "q", "a b"]), scalars, max_size=2)),
    },
)


@fuzz(300)
@given(_pipeline)
def test_pipeline_shaped_structures(document: dict[str, Any]) -> None:
    check([DefinitionFile("pipeline.yaml", dump(document))])


def _slots(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in a document, depth first."""
    found: list[tuple[Any, Any]] = []
    members = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in list(members):
        found.append((node, key))
        found.extend(_slots(child))
    return found


def _mutate(document: Any, data: st.DataObject) -> None:
    slots = _slots(document)
    if not slots:
        return
    parent, key = data.draw(st.sampled_from(slots))
    action = data.draw(st.sampled_from(["delete", "replace", "wrap", "stringify", "reference", "duplicate"]))
    if action == "delete":
        del parent[key]
    elif action == "replace":
        parent[key] = data.draw(values)
    elif action == "wrap":
        parent[key] = [parent[key]] if data.draw(st.booleans()) else {"x": parent[key]}
    elif action == "stringify":
        parent[key] = str(parent[key])
    elif action == "reference":  # point an input at some operator: unknown names, self-edges and cycles
        operators = document.get("operators")  # an earlier round may have made it anything, even None
        listed = operators if isinstance(operators, list) else []
        names = [op.get("name") for op in listed if isinstance(op, dict)] or ["x"]
        parent[key] = {"from": copy.deepcopy(data.draw(st.sampled_from(names))), "path": "/in"}
    elif isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))


@fuzz(500)
@given(st.sampled_from(EXAMPLES), st.integers(1, 4), st.data())
def test_mutated_examples(original: dict[str, Any], rounds: int, data: st.DataObject) -> None:
    document = copy.deepcopy(original)
    for _ in range(rounds):
        _mutate(document, data)
    check([DefinitionFile("pipeline.yaml", dump(document))])


@fuzz(500)
@given(st.sampled_from(["a_argo.yaml", "b_covid.yaml", "d_typed.yaml"]), st.data())
def test_mutated_text(name: str, data: st.DataObject) -> None:
    text = example(name)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 8))
        text = (
            text[:at]
            + data.draw(st.text(ANY_CHARACTER, max_size=6) | st.sampled_from(["&a ", "*a", "[", "{", ": ", "\n  "]))
            + text[at + cut :]
        )
    check([DefinitionFile("pipeline.yaml", text)])


@fuzz(500)
@given(st.text(ANY_CHARACTER, max_size=200))
def test_random_text(text: str) -> None:
    check([DefinitionFile("pipeline.yaml", text)])


_refs = st.sampled_from(["n0", "n1", "img"])


def _operator_file(data: st.DataObject, index: int, count: int) -> dict[str, Any]:
    parameters = st.dictionaries(st.sampled_from(["p", "q"]), _maybe(_refs), max_size=2)
    document: dict[str, Any] = {
        "name": f"op{index}",
        "parameters": data.draw(_maybe(parameters)),
        "container": {"image": data.draw(_maybe(st.sampled_from(["img", "img", "img", "${{ q }}"])))},
        "input": [{"path": "/in", "from": data.draw(_maybe(st.sampled_from(["${{ p }}", "n0", "n1"])))}],
        "output": [{"path": "/out"}],
    }
    if data.draw(st.booleans()):
        del document["input"][0]["from"]
    if data.draw(st.integers(0, 7)) == 0:  # an import edge to any file: self-imports and cycles included
        document["import"] = {"path": f"f{data.draw(st.integers(0, count - 1))}.yaml"}
    return document


@fuzz(120)
@given(st.integers(1, 4), st.data())
def test_random_import_graphs(count: int, data: st.DataObject) -> None:
    files = [DefinitionFile(f"f{i}.yaml", dump(_operator_file(data, i, count))) for i in range(count)]
    arguments = st.dictionaries(st.sampled_from(["p", "q", "r"]), _maybe(_refs), max_size=2)
    entries = [
        {
            "name": f"n{k}",
            "import": {"path": f"f{data.draw(_maybe(st.integers(0, count - 1)))}.yaml", "args": data.draw(arguments)},
        }
        for k in range(data.draw(st.integers(1, 3)))
    ]
    main = {"api-version": "0.4.0", "name": "imports", "parameters": {"p": "n0"}, "operators": entries}
    start = data.draw(
        st.none() | st.just({"p": "n1"}) | st.dictionaries(st.sampled_from(["p", "zz"]), st.text(max_size=3))
    )
    check([DefinitionFile("pipeline.yaml", dump(main)), *files], start)
