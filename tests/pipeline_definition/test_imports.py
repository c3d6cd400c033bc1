"""``import`` declarations: file resolution, overrides, nesting, cycles and limits."""

from __future__ import annotations

import time

import pytest

from shared.errors import ClaretError
from shared.pipeline_definition import Container, DefinitionFile, load_pipeline

from .test_support import DEFINITION, LOAD, files, load, refused

OPERATOR = 'name: worker\ncontainer: {image: worker, tag: "2"}\ninput: [{path: /in}]\noutput: [{path: /out}]\n'


def importing(path: str, extra: str = "") -> str:
    """A pipeline whose only operator is imported from ``path``; ``extra`` adds sibling keys, one per line."""
    siblings = "".join(f"    {line}\n" for line in extra.splitlines())
    return f'api-version: 0.4.0\nname: importer\noperators:\n  - import: {{path: "{path}"}}\n{siblings}'


def test_missing_import_names_the_path_and_the_importer() -> None:
    refused(
        LOAD, importing("ops/nowhere.yaml"), "operators[0].import.path", "'ops/nowhere.yaml' imported by pipeline.yaml"
    )


def test_rooted_and_escaping_import_paths_are_refused() -> None:
    refused(
        DEFINITION, importing("/etc/worker.yaml"), "import.path", "must be relative", extra={"worker.yaml": OPERATOR}
    )
    refused(
        DEFINITION, importing("../worker.yaml"), "import.path", "leaves the definition", extra={"worker.yaml": OPERATOR}
    )


def test_import_paths_are_normalised_and_case_insensitive() -> None:
    for path in ("./Ops/Worker.YAML", "ops/x/../worker.yaml", "ops\\\\worker.yaml", "ops//./worker.yaml"):
        pipeline = load(importing(path), extra={"ops/worker.yaml": OPERATOR})
        assert pipeline.operator("worker").container == Container("worker", "2")


def test_imports_are_relative_to_the_importing_file() -> None:
    nested = """\
        import: {path: ../shared/base.yaml}
        name: nested
    """
    pipeline = load(importing("ops/nested.yaml"), extra={"ops/nested.yaml": nested, "shared/base.yaml": OPERATOR})
    assert pipeline.operators[0].name == "nested"
    assert pipeline.operators[0].container.image == "worker"


def test_sibling_keys_replace_whole_properties() -> None:
    extra = "container: {image: other}\nrequests: {gpu: 1}"
    worker = load(importing("worker.yaml", extra), extra={"worker.yaml": OPERATOR}).operators[0]
    assert worker.container == Container("other")  # the imported tag "2" is not merged in
    assert worker.requests.gpu == 1


def test_import_problems_are_reported_in_the_file_that_has_them() -> None:
    broken = OPERATOR.replace("path: /out", "path: out")
    refused(DEFINITION, importing("w.yaml"), "w.yaml: operator 'worker': output[0].path", extra={"w.yaml": broken})
    refused(LOAD, importing("w.yaml"), "w.yaml: invalid YAML", "line", extra={"w.yaml": "name: [unclosed"})
    refused(LOAD, importing("w.yaml"), "w.yaml", "expected a mapping document", extra={"w.yaml": "- a\n- b\n"})
    refused(
        DEFINITION,
        importing("w.yaml", "container: {tag: x}"),
        "pipeline.yaml",
        "container.image",
        extra={"w.yaml": OPERATOR},
    )


def test_import_needs_a_path() -> None:
    text = importing("x").replace('import: {path: "x"}', "import: {args: {a: b}}")
    refused(DEFINITION, text, "operators[0].import.path: is required")
    refused(LOAD, importing("x").replace('import: {path: "x"}', "import: here"), "operators[0].import", "mapping")


def test_imported_operator_may_declare_its_own_api_version() -> None:
    typed = OPERATOR.replace("output: [{path: /out}]", "api-version: 0.5.0\noutput: [{name: v, type: string}]")
    worker = load(importing("w.yaml"), extra={"w.yaml": typed}).operators[0]
    assert worker.outputs[0].type == "string"
    assert load(importing("w.yaml"), extra={"w.yaml": OPERATOR.replace("output", "type: x\noutput")}).operators


def test_import_cycles_are_refused() -> None:
    a = "name: a\nimport: {path: b.yaml}\n"
    b = "import: {path: a.yaml}\n"
    refused(
        DEFINITION,
        importing("a.yaml"),
        "b.yaml: import.path",
        "import cycle: a.yaml -> b.yaml -> a.yaml",
        extra={"a.yaml": a, "b.yaml": b},
    )
    refused(DEFINITION, importing("pipeline.yaml"), "import cycle: pipeline.yaml -> pipeline.yaml")


def test_deep_import_chains_are_refused() -> None:
    chain = {f"f{i}.yaml": f"import: {{path: f{i + 1}.yaml}}\n" for i in range(30)}
    refused(DEFINITION, importing("f0.yaml"), "import.path", "nested deeper than 16", extra=chain)


def test_import_count_is_capped_and_fails_fast() -> None:
    chain = {f"c{i}.yaml": f"import: {{path: c{i + 1}.yaml}}\n" for i in range(10)}
    chain["c10.yaml"] = OPERATOR
    main = "api-version: 0.4.0\nname: many\noperators:\n" + "  - import: {path: c0.yaml}\n" * 100
    started = time.monotonic()
    refused(DEFINITION, main, "import.path", "more than 512 imports", extra=chain)
    assert time.monotonic() - started < 2


def test_services_can_be_imported_and_renamed() -> None:
    service = "name: trtis\ncontainer: {image: triton}\nconnections: {http: [{name: URI, port: 8000}]}\n"
    main = """\
        api-version: 0.4.0
        name: svc
        operators:
          - name: op
            container: {image: op}
            input: [{path: /in}]
            services:
              - name: local
                import: {path: services/triton.yaml}
    """
    (svc,) = load(main, extra={"services/triton.yaml": service}).operator("op").services
    assert (svc.name, svc.container.image, svc.http_connections) == ("local", "triton", (("URI", 8000),))


def test_file_list_problems_are_load_errors() -> None:
    for bad in ([], [DefinitionFile("", "x")], [DefinitionFile("../p.yaml", "x")]):
        with pytest.raises(ClaretError) as caught:
            load_pipeline(bad)
        assert caught.value.code == LOAD
    with pytest.raises(ClaretError) as caught:
        load_pipeline([*files("a: 1"), DefinitionFile("PIPELINE.yaml", "")])
    assert "sent twice" in caught.value.messages[0]


def test_unused_extra_files_are_not_parsed() -> None:
    pipeline = load(importing("w.yaml"), extra={"w.yaml": OPERATOR, "notes.yaml": "{{{ not yaml"})
    assert pipeline.operators[0].name == "worker"
