"""Each validation rule: a definition that breaks it (code and location checked) and one that keeps it.

Cases edit :func:`base` (reader -> seg, api 0.4.0) by dotted paths; ``seg`` has outputs ``mask`` and ``render``.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import ErrorCode
from shared.pipeline_definition import Container, Requests, Service, load_pipeline

from .test_support import DEFINITION, DELETE, LOAD, base, dump, edited, files, load, refused

READER = "operators.0"
SEG = "operators.1"
ARRAY = {"name": "volume", "type": "array", "element-type": "float32", "shape": [-1, 512, 512]}
VOLUME_AS_TRITON_URI = {"name": "TRITON_URI", "path": "/x"}
SVC = {"name": "trtis", "container": {"image": "triton"}, "connections": {"http": [{"name": "TRITON_URI"}]}}

Edit = tuple[str, Any]
BROKEN: list[tuple[str, str, list[Edit], ErrorCode, tuple[str, ...]]] = [
    # id, api-version, edits, code, fragments of one message
    ("version missing", "0.4.0", [("api-version", DELETE)], DEFINITION, ("pipeline.yaml", "api-version", "required")),
    ("version too new", "0.8.0", [], DEFINITION, ("api-version", "0.8.0", "not supported")),
    ("version too old", "0.1.9", [], DEFINITION, ("api-version", "0.1.9", "not supported")),
    ("version garbage", "latest", [], DEFINITION, ("api-version", "'latest' is not a version")),
    ("version a list", "0.4.0", [("api-version", ["0.4.0"])], LOAD, ("api-version", "expected a string")),
    ("name missing", "0.4.0", [("name", DELETE)], DEFINITION, ("pipeline.yaml: name: is required",)),
    ("name bad chars", "0.4.0", [("name", "my pipeline")], DEFINITION, ("name", "'my pipeline' is not a valid name")),
    ("name too long", "0.4.0", [("name", "n" * 256)], DEFINITION, ("name", "not a valid name")),
    ("no operators", "0.4.0", [("operators", [])], DEFINITION, ("operators", "at least one operator")),
    ("operators a map", "0.4.0", [("operators", {"a": 1})], LOAD, ("operators", "expected a list")),
    ("operator a string", "0.4.0", [(SEG, "seg")], LOAD, ("operators[1]", "expected a mapping")),
    ("pull-secrets entry", "0.4.0", [("pull-secrets", [{"a": 1}])], LOAD, ("pull-secrets[0]", "expected a string")),
    ("pipeline timeout 0", "0.4.0", [("timeout", 0)], DEFINITION, ("timeout", "out of range")),
    ("pipeline timeout text", "0.4.0", [("timeout", "soon")], LOAD, ("timeout", "whole number")),
    (
        "duplicate operator",
        "0.4.0",
        [(f"{SEG}.name", "READER")],
        DEFINITION,
        ("operators[1]", "'READER' is used twice"),
    ),
    ("operator name bad", "0.4.0", [(f"{SEG}.name", "s e g")], DEFINITION, ("operators[1]: name", "not a valid")),
    ("operator name missing", "0.4.0", [(f"{SEG}.name", DELETE)], DEFINITION, ("operators[1]: name: is required",)),
    (
        "container missing",
        "0.4.0",
        [(f"{SEG}.container", DELETE)],
        DEFINITION,
        ("operator 'seg': container: is required",),
    ),
    (
        "container a string",
        "0.4.0",
        [(f"{SEG}.container", "clara/seg")],
        LOAD,
        ("operator 'seg': container", "mapping"),
    ),
    ("image missing", "0.4.0", [(f"{SEG}.container.image", DELETE)], DEFINITION, ("operator 'seg': container.image",)),
    ("image empty", "0.4.0", [(f"{SEG}.container.image", "")], DEFINITION, ("container.image", "non-empty")),
    ("tag with space", "0.4.0", [(f"{SEG}.container.tag", "a b")], DEFINITION, ("container.tag", "without spaces")),
    (
        "command a string",
        "0.4.0",
        [(f"{SEG}.container.command", "run")],
        LOAD,
        ("container.command", "expected a list"),
    ),
    ("command entry map", "0.4.0", [(f"{SEG}.container.command", [{"a": 1}])], LOAD, ("container.command[0]",)),
    ("input path relative", "0.4.0", [(f"{SEG}.input.0.path", "in")], DEFINITION, ("'seg': input[0].path", "rooted")),
    ("output path relative", "0.4.0", [(f"{SEG}.output.1.path", "r")], DEFINITION, ("'seg': output[1].path", "rooted")),
    ("input path missing", "0.4.0", [(f"{SEG}.input.0.path", DELETE)], DEFINITION, ("input[0].path: is required",)),
    (
        "output path missing",
        "0.4.0",
        [(f"{READER}.output.0.path", DELETE)],
        DEFINITION,
        ("output[0].path: is required",),
    ),
    (
        "input path climbs",
        "0.4.0",
        [(f"{SEG}.input.0.path", "/../oldroot/tmp/x/a")],
        DEFINITION,
        ("'seg': input[0].path", "'/../oldroot/tmp/x/a' must not contain a '..' segment"),
    ),
    (
        "output path climbs",
        "0.4.0",
        [(f"{SEG}.output.1.path", "/render/../../x")],
        DEFINITION,
        ("'seg': output[1].path", "'/render/../../x' must not contain a '..' segment"),
    ),
    ("path used twice", "0.4.0", [(f"{SEG}.output.1.path", "/input/")], DEFINITION, ("output[1].path", "used twice")),
    ("output names twice", "0.4.0", [(f"{SEG}.output.1.name", "MASK")], DEFINITION, ("output[1].name", "used twice")),
    (
        "several unnamed",
        "0.4.0",
        [(f"{SEG}.output.1.name", DELETE)],
        DEFINITION,
        ("'seg': output[1].name: is required",),
    ),
    ("from unknown", "0.4.0", [(f"{SEG}.input.0.from", "nobody")], DEFINITION, ("no operator named 'nobody'",)),
    ("from itself", "0.4.0", [(f"{SEG}.input.0.from", "Seg")], DEFINITION, ("'seg': input[0].from", "its own output")),
    ("from bad name", "0.4.0", [(f"{SEG}.input.0.from", "a b")], DEFINITION, ("input[0].from", "not a valid name")),
    ("name unknown", "0.4.0", [(f"{SEG}.input.0.name", "vol")], DEFINITION, ("input[0].name", "no output named 'vol'")),
    ("from without outputs", "0.4.0", [(f"{READER}.output", DELETE)], DEFINITION, ("'reader' declares no output",)),
    (
        "name needed",
        "0.4.0",
        [(f"{READER}.input.0", {"from": "seg", "path": "/in"}), (f"{SEG}.input.0.from", DELETE)],
        DEFINITION,
        ("'reader': input[0].name: is required", "2 outputs"),
    ),
    (
        "cycle",
        "0.4.0",
        [(f"{READER}.input.0", {"from": "seg", "name": "mask", "path": "/in"})],
        DEFINITION,
        ("pipeline.yaml: operators: operators form a cycle", "reader -> seg -> reader"),
    ),
    ("operator version bad", "0.4.0", [(f"{SEG}.api-version", "0.9.0")], DEFINITION, ("'seg': api-version",)),
    ("cpu negative", "0.4.0", [(f"{SEG}.requests", {"cpu": -1})], DEFINITION, ("'seg': requests.cpu", "out of range")),
    ("memory negative", "0.4.0", [(f"{SEG}.requests", {"memory": -1})], DEFINITION, ("requests.memory", "range")),
    ("gpu negative", "0.4.0", [(f"{SEG}.requests", {"gpu": "-2"})], DEFINITION, ("requests.gpu", "out of range")),
    ("cpu fraction", "0.4.0", [(f"{SEG}.requests", {"cpu": 0.5})], DEFINITION, ("requests.cpu", "not a whole number")),
    ("memory text", "0.4.0", [(f"{SEG}.requests", {"memory": "4G"})], LOAD, ("requests.memory", "whole number")),
    ("requests a list", "0.4.0", [(f"{SEG}.requests", [1])], LOAD, ("'seg': requests", "expected a mapping")),
    ("op timeout 0", "0.4.0", [(f"{SEG}.timeout", 0)], DEFINITION, ("'seg': timeout", "out of range")),
    ("variable nested", "0.4.0", [(f"{SEG}.variables", {"A": [1]})], LOAD, ("'seg': variables.A", "expected a string")),
    ("variable key =", "0.4.0", [(f"{SEG}.variables", {"A=B": "1"})], DEFINITION, ("variables.A=B", "keys must")),
    ("models a string", "0.6.0", [(f"{SEG}.models", ["m"])], LOAD, ("'seg': models[0]", "expected a mapping")),
    ("model unnamed", "0.6.0", [(f"{SEG}.models", [{}])], DEFINITION, ("'seg': models[0].name: is required",)),
    ("model spaces", "0.6.0", [(f"{SEG}.models", [{"name": "a b"}])], DEFINITION, ("models[0].name", "model name")),
    ("model twice", "0.6.0", [(f"{SEG}.models", [{"name": "m"}, {"name": "M"}])], DEFINITION, ("models[1].name",)),
    ("service unnamed", "0.4.0", [(f"{SEG}.services", [{**SVC, "name": None}])], DEFINITION, ("services[0].name",)),
    (
        "service no container",
        "0.4.0",
        [(f"{SEG}.services", [{"name": "t"}])],
        DEFINITION,
        ("'seg': services[0].container: is required",),
    ),
    (
        "connection not env",
        "0.4.0",
        [(f"{SEG}.services", [{**SVC, "connections": {"http": [{"name": "TRITON-URI"}]}}])],
        DEFINITION,
        ("services[0].connections.http[0].name", "environment variable"),
    ),
    (
        "port too low",
        "0.4.0",
        [(f"{SEG}.services", [{**SVC, "connections": {"http": [{"name": "U", "port": 80}]}}])],
        DEFINITION,
        ("services[0].connections.http[0].port", "between 1024 and 65535"),
    ),
    (
        "volume path relative",
        "0.4.0",
        [(f"{SEG}.services", [{**SVC, "connections": {"volume": [{"name": "SHARED", "path": "shared"}]}}])],
        DEFINITION,
        ("services[0].connections.volume[0].path", "must be rooted"),
    ),
    (
        "volume without path",
        "0.4.0",
        [(f"{SEG}.services", [{**SVC, "connections": {"volume": [{"name": "SHARED"}]}}])],
        DEFINITION,
        ("services[0].connections.volume[0].path: is required",),
    ),
    (
        "volume name taken by http",
        "0.4.0",
        [
            (
                f"{SEG}.services",
                [{**SVC, "connections": {**SVC["connections"], "volume": [{"name": "TRITON_URI", "path": "/x"}]}}],
            )
        ],
        DEFINITION,
        ("services[0].connections", "'TRITON_URI' is used twice"),
    ),
    ("services twice", "0.4.0", [(f"{SEG}.services", [SVC, SVC])], DEFINITION, ("services[1].name", "used twice")),
    (
        "connection twice",
        "0.4.0",
        [(f"{SEG}.services", [SVC, {**SVC, "name": "other"}])],
        DEFINITION,
        ("services[1].connections", "'TRITON_URI' is used twice"),
    ),
    # typed I/O (api >= 0.5.0)
    (
        "typed unnamed",
        "0.5.0",
        [(f"{READER}.output.0", {"type": "string"})],
        DEFINITION,
        ("output[0].name: is required",),
    ),
    (
        "type unknown",
        "0.5.0",
        [(f"{READER}.output.0", {**ARRAY, "type": "tensor"})],
        DEFINITION,
        ("unknown type 'tensor'",),
    ),
    (
        "array no element",
        "0.5.0",
        [(f"{READER}.output.0", {**ARRAY, "element-type": None})],
        DEFINITION,
        ("'reader': output[0].element-type: is required",),
    ),
    (
        "array element free",
        "0.5.0",
        [(f"{READER}.output.0", {**ARRAY, "element-type": "dicom"})],
        DEFINITION,
        ("output[0].element-type", "not a primitive"),
    ),
    (
        "array no shape",
        "0.5.0",
        [(f"{READER}.output.0", {**ARRAY, "shape": []})],
        DEFINITION,
        ("output[0].shape", "required"),
    ),
    ("shape zero", "0.5.0", [(f"{READER}.output.0", {**ARRAY, "shape": [0]})], DEFINITION, ("output[0].shape[0]",)),
    ("shape text", "0.5.0", [(f"{READER}.output.0", {**ARRAY, "shape": "512"})], LOAD, ("output[0].shape", "list")),
    (
        "string with shape",
        "0.5.0",
        [(f"{READER}.output.0", {"name": "s", "type": "string", "shape": [1]})],
        DEFINITION,
        ("output[0].shape", "omitted for type 'string'"),
    ),
    (
        "stream no element",
        "0.5.0",
        [(f"{READER}.output.0", {"name": "s", "type": "stream", "path": "/s"})],
        DEFINITION,
        ("output[0].element-type: is required",),
    ),
    (
        "stream no path",
        "0.5.0",
        [(f"{READER}.output.0", {"name": "s", "type": "stream", "element-type": "dicom"})],
        DEFINITION,
        ("output[0].path: is required",),
    ),
    (
        "element without type",
        "0.5.0",
        [(f"{READER}.output.0.element-type", "uint8")],
        DEFINITION,
        ("output[0].element-type", "needs a 'type'"),
    ),
    (
        "typed mismatch",
        "0.5.0",
        [(f"{READER}.output.0", ARRAY), (f"{SEG}.input.0", {**ARRAY, "from": "reader", "element-type": "int16"})],
        DEFINITION,
        ("'seg': input[0].type", "array<int16>", "array<float32>"),
    ),
    (
        "shape mismatch",
        "0.5.0",
        [(f"{READER}.output.0", ARRAY), (f"{SEG}.input.0", {**ARRAY, "from": "reader", "shape": [-1, 256, 256]})],
        DEFINITION,
        ("input[0].type", "shape [-1, 256, 256]"),
    ),
    (
        "typed from untyped",
        "0.5.0",
        [(f"{SEG}.input.0", {"from": "reader", "type": "string"})],
        DEFINITION,
        ("input[0].type", "untyped"),
    ),
]


@pytest.mark.parametrize(
    ("version", "edits", "code", "fragments"), [case[1:] for case in BROKEN], ids=[c[0] for c in BROKEN]
)
def test_broken_definition_is_refused_with_its_location(
    version: str, edits: list[Edit], code: ErrorCode, fragments: tuple[str, ...]
) -> None:
    refused(code, edited(base(version), *edits), *fragments)


def test_versions_in_range_load_and_numbers_are_read_as_written() -> None:
    for version in ("0.2.0", "0.4.0", "0.7.9"):
        assert load(base(version)).api_version == version
    assert load(dump(base()).replace("api-version: 0.4.0", "api-version: 0.3")).api_version == "0.3.0"


def test_names_are_case_insensitive_and_resolved_to_the_declared_spelling() -> None:
    pipeline = load(edited(base(), (f"{SEG}.input.0.from", "READER"), (f"{SEG}.name", "Seg")))
    assert pipeline.operator("seg").upstream == ("reader",)
    assert pipeline.operator("SEG").inputs[0].from_operator == "reader"
    assert load(edited(base(), ("name", "n" * 255))).name == "n" * 255


def test_unknown_and_ignored_keys_are_accepted() -> None:
    document = edited(base(), ("pipeline-inject", {"x": 1}), ("orchestrator", "Clara"), (f"{SEG}.future", [1]))
    assert load(document).name == "base"


def test_single_named_output_is_taken_without_a_name() -> None:
    pipeline = load(edited(base(), (f"{READER}.output.0.name", "out")))
    assert pipeline.operator("seg").inputs[0].payload_subpath == "operators/reader/out"


def test_input_by_output_name_and_second_payload_input() -> None:
    document = edited(
        base(),
        (f"{READER}.input.1", {"from": "seg", "name": "Render", "path": "/render"}),
        (f"{SEG}.input.0.from", DELETE),
    )
    pipeline = load(document)
    assert pipeline.operator("reader").inputs[1].payload_subpath == "operators/seg/render"
    assert pipeline.roots() == ("seg",)
    assert pipeline.topological_order() == ("seg", "reader")


def test_container_defaults_and_stringified_values() -> None:
    text = dump(edited(base(), (f"{SEG}.container.command", ["sleep", 10, True]))) + "  timeout: 60\n"
    text = text.replace("tag: '1'", "tag: 18.10")
    pipeline = load(text)
    assert pipeline.operator("reader").container == Container("clara/reader", "18.10")
    assert pipeline.operator("seg").container == Container("clara/seg", "latest", ("sleep", "10", "true"))
    assert pipeline.operator("seg").container.reference == "clara/seg:latest"


def test_requests_accept_whole_numbers_in_any_spelling() -> None:
    document = edited(base(), (f"{SEG}.requests", {"cpu": 2.0, "gpu": "1", "memory": "256"}))
    assert load(document).operator("seg").requests == Requests(cpu=2, gpu=1, memory=256)
    assert load(base()).operator("seg").requests == Requests(cpu=1, gpu=0, memory=512)


@pytest.mark.parametrize("zero", [0, "0", 0.0, "+0", "-0"], ids=["int", "text", "float", "plus", "minus"])
def test_zero_cpu_or_memory_means_the_default_not_unlimited(zero: object) -> None:
    """``cpu: 0`` / ``memory: 0`` once opted out of every limit; they now mean 1 CPU and 512 MB. ``gpu: 0`` is
    no GPU (the default anyway), for operators and services alike."""
    document = edited(base(), (f"{SEG}.requests", {"cpu": zero, "gpu": zero, "memory": zero}))
    assert load(document).operator("seg").requests == Requests(cpu=1, gpu=0, memory=512)
    document = edited(
        base(), (f"{SEG}.requests", {"cpu": zero, "memory": 64}), (f"{READER}.requests", {"memory": zero})
    )
    assert load(document).operator("seg").requests == Requests(cpu=1, gpu=0, memory=64)
    assert load(document).operator("reader").requests == Requests(cpu=1, gpu=0, memory=512)
    service = {**SVC, "requests": {"cpu": zero, "gpu": 1, "memory": zero}}
    (loaded,) = load(edited(base(), (f"{SEG}.services", [service]))).operator("seg").services
    assert loaded.requests == Requests(cpu=1, gpu=1, memory=512)


def test_variables_are_stringified() -> None:
    document = edited(base(), (f"{SEG}.variables", {"A": 2, "B": True, "C": "x", "D": 1.5}))
    assert load(document).operator("seg").variables == {"A": "2", "B": "true", "C": "x", "D": "1.5"}


def test_timeouts_default_and_clamp() -> None:
    assert load(base()).timeout == 600
    assert load(edited(base(), ("timeout", 900))).timeout == 900
    assert load(edited(base(), ("timeout", 99999), (f"{SEG}.timeout", 5000))).timeout == 1800
    assert load(edited(base(), (f"{SEG}.timeout", 5000))).operator("seg").timeout == 1800
    assert load(base()).operator("seg").timeout is None
    pipeline = load_pipeline(files(dump(base())), default_timeout=100, max_timeout=50)
    assert pipeline.timeout == 50


def test_models_and_services_load() -> None:
    document = edited(
        base("0.6.0"),
        (f"{SEG}.models", [{"name": "spleen_v1"}, {"name": "liver.v2"}]),
        (f"{SEG}.services", [{**SVC, "requests": {"gpu": 1}, "variables": {"X": 1}}]),
    )
    seg = load(document).operator("seg")
    assert seg.models == ("spleen_v1", "liver.v2")
    assert seg.services == (
        Service("trtis", Container("triton"), Requests(gpu=1), {"X": "1"}, (("TRITON_URI", None),)),
    )


def test_volume_connections_load() -> None:
    volume = {"volume": [{"name": "SHARED", "path": "/shared"}]}
    document = edited(base("0.4.0"), (f"{SEG}.services", [{**SVC, "connections": {**SVC["connections"], **volume}}]))
    [service] = load(document).operator("seg").services
    assert (service.http_connections, service.volume_connections) == ((("TRITON_URI", None),), (("SHARED", "/shared"),))


def test_models_accepted_before_0_6_0_like_nvidia_tools_do() -> None:
    assert load(edited(base("0.4.0"), (f"{SEG}.models", [{"name": "m"}]))).operator("seg").models == ("m",)


def test_typed_inputs_match_equivalent_types_and_dynamic_sizes() -> None:
    document = edited(
        base("0.5.0"),
        (f"{READER}.output.0", {**ARRAY, "element-type": "f32"}),
        (f"{READER}.output.1", {"name": "text", "type": "string"}),
        (f"{READER}.output.2", {"name": "count", "type": "u8"}),
        (
            f"{SEG}.input.0",
            {"from": "reader", "name": "volume", "type": "array", "element-type": "float32", "shape": [2, -1, 512]},
        ),
        (f"{SEG}.input.1", {"from": "reader", "name": "text", "type": "array", "element-type": "uint8", "shape": [-1]}),
        (f"{SEG}.input.2", {"from": "reader", "name": "count", "type": "uint8"}),
    )
    seg = load(document).operator("seg")
    assert [entry.type for entry in seg.inputs] == ["array", "array", "uint8"]
    assert seg.inputs[0].shape == (2, -1, 512)
    assert load(document).operator("reader").outputs[0].element_type == "float32"


def test_typed_attributes_are_ignored_before_0_5_0() -> None:
    document = edited(base("0.4.0"), (f"{READER}.output.0.type", "no-such-type"))
    assert load(document).operator("reader").outputs[0].type is None


def test_typed_shared_memory_needs_no_path_but_untyped_does() -> None:
    document = edited(base("0.5.0"), (f"{READER}.output.0", ARRAY), (f"{SEG}.input.0", {**ARRAY, "from": "reader"}))
    assert load(document).operator("seg").inputs[0].path is None
    refused(DEFINITION, edited(base("0.5.0"), (f"{SEG}.input.0.path", DELETE)), "'seg': input[0].path: is required")


def test_several_problems_are_reported_together() -> None:
    document = edited(base(), ("name", "bad name"), (f"{SEG}.input.0.from", "ghost"), (f"{SEG}.requests", {"gpu": -2}))
    error = refused(DEFINITION, document, "name")
    assert len(error.messages) == 3
