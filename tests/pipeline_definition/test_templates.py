"""Template parameters: defaults, Start arguments, import args, and what substitution may not do."""

from __future__ import annotations

from .test_support import DEFINITION, LOAD, VARIABLES, load, refused

TEMPLATED = """\
    api-version: 0.4.0
    name: templated
    parameters:
      IMAGE: clara/reader
      TAG: "1.0"
      count: 3
      no-default:
    operators:
      - name: reader
        container:
          image: ${{IMAGE}}
          tag: ${{ TAG }}
          command: ["run", "--tag=${{TAG}}-${{ TAG }}"]
        input: [{path: /in}]
        output: [{path: /out}]
"""


def test_defaults_fill_placeholders_at_create() -> None:
    pipeline = load(TEMPLATED)
    reader = pipeline.operator("reader")
    assert reader.container.reference == "clara/reader:1.0"
    assert reader.container.command == ("run", "--tag=1.0-1.0")
    assert pipeline.parameters == {"IMAGE": "clara/reader", "TAG": "1.0"}


def test_start_arguments_override_defaults() -> None:
    pipeline = load(TEMPLATED, arguments={"TAG": "2.0", "no-default": "x", "count": "4"})
    assert pipeline.operator("reader").container.tag == "2.0"
    assert pipeline.parameters["TAG"] == "2.0"
    assert pipeline.parameters["count"] == "4"


def test_start_argument_not_declared_is_invalid_variables() -> None:
    error = refused(VARIABLES, TEMPLATED, "pipeline.yaml", "variable 'COLOR'", arguments={"COLOR": "red", "TAG": "x"})
    assert len(error.messages) == 1


def test_placeholder_without_default_or_argument_is_refused_at_create() -> None:
    text = TEMPLATED.replace("tag: ${{ TAG }}", "tag: ${{ missing }}")
    refused(DEFINITION, text, "pipeline.yaml: operators[0].container.tag", "'missing' is not declared")


def test_non_string_default_counts_as_undefined() -> None:
    text = TEMPLATED.replace("tag: ${{ TAG }}", "tag: ${{ count }}")
    refused(DEFINITION, text, "container.tag", "'count' has no string default")
    assert load(text, arguments={"count": "7"}).operator("reader").container.tag == "7"


def test_malformed_placeholder_is_refused() -> None:
    text = TEMPLATED.replace("tag: ${{ TAG }}", "tag: ${{ two words }}")
    refused(DEFINITION, text, "container.tag", "malformed template placeholder")


def test_arguments_cannot_inject_yaml_structure() -> None:
    evil = "x\noperators: []\n  - name: evil\n"
    text = TEMPLATED.replace("name: templated", "name: templated\n    description: ${{ NOTE }}")
    text = text.replace("count: 3", "count: 3\n      NOTE: none")
    pipeline = load(text, arguments={"NOTE": evil})
    assert pipeline.description == evil
    assert [op.name for op in pipeline.operators] == ["reader"]


def test_parameter_names_must_be_valid() -> None:
    refused(
        DEFINITION, TEMPLATED.replace("count: 3", "bad name: 3"), "parameters.bad name", "not a valid parameter name"
    )


SERVICE_TEMPLATE = """\
    name: svc
    parameters: {port: "8000"}
    container: {image: "triton:${{port}}"}
"""


def test_services_are_not_templates_and_ignore_args() -> None:
    main = """\
        api-version: 0.4.0
        name: with-service
        operators:
          - name: op
            container: {image: op}
            input: [{path: /in}]
            services:
              - import: {path: svc.yaml, args: {anything: 1}}
    """
    (service,) = load(main, extra={"svc.yaml": SERVICE_TEMPLATE}).operator("op").services
    assert service.container.image == "triton:${{port}}"


OPERATOR_TEMPLATE = """\
    name: worker
    parameters:
      source: ""
      gpus: "1"
    container: {image: worker}
    requests: {gpu: "${{gpus}}"}
    input: [{from: "${{source}}", path: /in}]
    output: [{path: /out}]
"""


def _importing(args: str) -> str:
    return f"""\
        api-version: 0.4.0
        name: imports
        parameters: {{first: head}}
        operators:
          - name: head
            container: {{image: head}}
            input: [{{path: /in}}]
            output: [{{path: /out}}]
          - import:
              path: worker.yaml
              args: {args}
    """


def test_import_args_fill_the_imported_template_and_may_use_the_importers() -> None:
    pipeline = load(_importing("{source: '${{ first }}', gpus: 2}"), extra={"worker.yaml": OPERATOR_TEMPLATE})
    worker = pipeline.operator("worker")
    assert worker.upstream == ("head",)
    assert worker.requests.gpu == 2


def test_import_arg_not_declared_names_file_and_arg() -> None:
    refused(
        DEFINITION,
        _importing("{source: head, color: red}"),
        "pipeline.yaml: operators[1].import.args.color",
        "worker.yaml declares no parameter 'color'",
        extra={"worker.yaml": OPERATOR_TEMPLATE},
    )


def test_unresolved_placeholder_in_imported_file_is_refused() -> None:
    template = OPERATOR_TEMPLATE.replace("image: worker", "image: '${{ IMAGE }}'")
    refused(
        DEFINITION,
        _importing("{source: head}"),
        "worker.yaml: container.image",
        "'IMAGE'",
        extra={"worker.yaml": template},
    )


def test_import_args_must_be_scalars() -> None:
    refused(
        LOAD,
        _importing("{source: [head]}"),
        "operators[1].import.args.source",
        "expected a string",
        extra={"worker.yaml": OPERATOR_TEMPLATE},
    )
