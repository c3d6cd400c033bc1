"""Keys the definition language does not define: accepted as before, and named (file, line, key path)."""

from __future__ import annotations

import textwrap

import pytest

from shared.errors import ClaretError
from shared.pipeline_definition import IgnoredKey, LoadedDefinition, load_definition, load_pipeline

from .test_support import DEFINITION, EXAMPLES, example, files

WILD = """\
api-version: 0.4.0
name: wild
reqests:
operators:
- name: reader
  container:
    image: busybox
    variables: {MODE: fast}
  hostVolumePath: /data
  input:
  - path: /in
    frm: somewhere
  output: [{path: /out}]
"""
"""A pipeline as found in the wild: a typo with no value, and keys of other platforms' dialects."""

TAME = """\
api-version: 0.4.0
name: wild
operators:
- name: reader
  container:
    image: busybox
  input:
  - path: /in
  output: [{path: /out}]
"""
"""``WILD`` without its unknown keys."""


def loaded(main: str, extra: dict[str, str] | None = None) -> LoadedDefinition:
    return load_definition(files(main, extra))


def ignored(main: str, extra: dict[str, str] | None = None) -> list[tuple[str, int | None, str, str]]:
    return [(key.file, key.line, key.key, key.scope) for key in loaded(main, extra).ignored]


def test_unknown_keys_are_named_with_file_line_and_key_path() -> None:
    assert ignored(WILD) == [
        ("pipeline.yaml", 3, "reqests", ""),
        ("pipeline.yaml", 8, "container.variables", "operator 'reader'"),
        ("pipeline.yaml", 9, "hostVolumePath", "operator 'reader'"),
        ("pipeline.yaml", 12, "input[0].frm", "operator 'reader'"),
    ]
    assert loaded(WILD).warnings[1] == (
        "warning: pipeline.yaml:8: key 'container.variables' of operator 'reader' is not part of the pipeline "
        "definition language and is ignored"
    )
    assert loaded(WILD).warnings[0].startswith("warning: pipeline.yaml:3: key 'reqests' is not part of")


def test_unknown_keys_change_nothing_else() -> None:
    """Accepted as before: the same pipeline as without them, and load_pipeline (Jobs) is unchanged."""
    assert loaded(WILD).pipeline == load_pipeline(files(TAME))
    assert load_pipeline(files(WILD)) == loaded(WILD).pipeline


def test_a_refused_definition_is_still_refused_whatever_it_ignores() -> None:
    broken = WILD.replace("image: busybox", "tag: '1'")
    with pytest.raises(ClaretError) as caught:
        loaded(broken)
    assert caught.value.code == DEFINITION
    assert caught.value.messages == ("pipeline.yaml: operator 'reader': container.image: is required",)


def test_imported_files_warn_with_their_own_name_and_line() -> None:
    main = """\
        api-version: 0.4.0
        name: importer
        operators:
        - import:
            path: ops/worker.yaml
            args: {image: busybox}
            arg: typo
          colour: red
        """
    worker = """\
        parameters: {image: none}
        name: worker
        container:
          image: ${{ image }}
          tga: "2"
        output: [{path: /out}]
        services:
        - import: {path: trtis.yaml}
        """
    trtis = """\
        name: trtis
        container: {image: triton}
        connections:
          http:
          - name: TRITON_URI
            port: 8000
            protocol: http
        """
    extra = {"ops/worker.yaml": worker, "ops/trtis.yaml": trtis}
    assert ignored(main, extra) == [
        ("pipeline.yaml", 7, "operators[0].import.arg", ""),
        ("pipeline.yaml", 8, "colour", "operator 'worker'"),
        ("ops/worker.yaml", 5, "container.tga", "operator 'worker'"),
        ("ops/trtis.yaml", 7, "services[0].connections.http[0].protocol", "operator 'worker'"),
    ]


def test_each_operator_importing_a_file_names_its_keys() -> None:
    main = """\
        api-version: 0.4.0
        name: twice
        operators:
        - {name: a, import: {path: worker.yaml}}
        - {name: b, import: {path: worker.yaml}, input: [{from: a, path: /in}]}
        """
    worker = "container: {image: busybox}\nrequests: {gpus: 1}\noutput: [{path: /out}]\n"
    assert ignored(main, {"worker.yaml": worker}) == [
        ("worker.yaml", 2, "requests.gpus", "operator 'a'"),
        ("worker.yaml", 2, "requests.gpus", "operator 'b'"),
    ]


def test_aliases_and_merges_point_at_the_line_the_key_was_written_on() -> None:
    main = """\
        api-version: 0.4.0
        name: anchors
        defaults: &box
          image: busybox
          flavour: plain
        operators:
        - name: a
          container:
            <<: *box
            tag: "1"
          output: [{path: /out}]
        """
    assert ignored(main) == [
        ("pipeline.yaml", 3, "defaults", ""),
        ("pipeline.yaml", 5, "container.flavour", "operator 'a'"),
    ]


def test_keys_of_the_language_are_not_warned_about_even_when_unused() -> None:
    """``orchestrator`` and ``pipeline-inject`` (accepted and ignored by decision), typed attributes before
    0.5.0, a service's ``description`` and ``connections.volume``: all documented, none a typo."""
    main = """\
        api-version: 0.4.0
        name: documented
        description: every documented key
        orchestrator: Clara
        pipeline-inject: []
        pull-secrets: [ngc]
        timeout: 60
        parameters: {tag: "1"}
        operators:
        - name: a
          description: reads
          api-version: 0.4.0
          container: {image: busybox, tag: "${{ tag }}", command: [true]}
          requests: {cpu: 1, gpu: 0, memory: 256}
          variables: {ANYTHING: goes}
          timeout: 30
          models: [{name: m}]
          input: [{path: /in, type: stream, element-type: dicom}]
          output: [{name: o, path: /out, type: array, shape: [1]}]
          services:
          - name: s
            api-version: 0.4.0
            description: helper
            container: {image: triton}
            requests: {gpu: 1}
            variables: {X: y}
            connections: {http: [{name: URI, port: 8000}], volume: []}
        """
    assert loaded(main).ignored == ()


@pytest.mark.parametrize("name", sorted(path.name for path in EXAMPLES.glob("*.yaml")))
def test_the_spec_examples_have_no_unknown_key(name: str) -> None:
    assert loaded(example(name)).warnings == ()


def test_warnings_stop_at_the_message_limit_and_count_the_rest() -> None:
    unknown = "".join(f"extra{i}: 1\n" for i in range(60))
    warnings = loaded(textwrap.dedent(TAME) + unknown).warnings
    assert len(warnings) == 51
    assert warnings[49].startswith("warning: pipeline.yaml:59: key 'extra49'")
    assert warnings[50] == "warning: 10 more ignored keys are not listed"


def test_an_ignored_key_reads_well_without_a_scope_or_a_line() -> None:
    assert IgnoredKey("p.yaml", None, "x").message == (
        "warning: p.yaml: key 'x' is not part of the pipeline definition language and is ignored"
    )
