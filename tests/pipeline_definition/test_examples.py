"""The example pipelines of the definition-language spec (section 1.11) and the import examples (1.10)."""

from __future__ import annotations

from shared.pipeline_definition import Container, OperatorInput, Requests, Service

from .test_support import example, load


def test_argo_example_two_untyped_operators() -> None:
    pipeline = load(example("a_argo.yaml"))
    assert pipeline.api_version == "0.3.0"
    assert pipeline.name == "we-love-operators"
    assert pipeline.roots() == ("i-am-first",)
    assert pipeline.downstream("i-am-first") == ("last-i-am",)
    first, last = pipeline.operators
    assert first.container == Container("clara/examples/centos", "centos7", ("sh", "-c", "cp", "-r", "/in", "/out"))
    assert last.container.tag == "18.04"  # a YAML float, kept as written
    assert first.inputs[0].payload_subpath == "input"
    assert first.outputs[0].payload_subpath("i-am-first") == "operators/i-am-first"
    assert last.inputs[0].payload_subpath == "operators/i-am-first"
    assert last.upstream == ("i-am-first",)
    assert first.requests == Requests(cpu=1, gpu=0, memory=512)


def test_covid_example_named_outputs_second_payload_input_and_service() -> None:
    pipeline = load(example("b_covid.yaml"))
    assert pipeline.pull_secrets == ("ngc-clara",)
    assert pipeline.topological_order() == (
        "dicom-reader",
        "lung-segmentation",
        "dicom-writer",
        "register-dicom-output",
    )
    assert pipeline.roots() == ("dicom-reader",)
    writer = pipeline.operator("DICOM-Writer")
    assert [entry.payload_subpath for entry in writer.inputs] == ["operators/lung-segmentation/segmentation", "input"]
    assert writer.outputs[0].payload_subpath(writer.name) == "operators/dicom-writer/dicom"
    assert pipeline.operator("register-dicom-output").container.command[-1] == '["MYPACS"]'
    (trtis,) = pipeline.operator("lung-segmentation").services
    assert trtis == Service(
        name="trtis",
        container=Container(
            "nvcr.io/nvidia/tensorrtserver",
            "19.08-py3",
            ("trtserver", "--model-store=$(NVIDIA_CLARA_SERVICE_DATA_PATH)/models"),
        ),
        requests=Requests(gpu=1),
        http_connections=(("NVIDIA_CLARA_TRTISURI", 8000),),
    )


def test_spleen_example_models_requests_variables() -> None:
    pipeline = load(example("c_spleen.yaml"))
    spleen = pipeline.operator("spleen-segmentation")
    assert spleen.models == ("segmentation_ct_spleen_v1",)
    assert spleen.requests == Requests(cpu=2, gpu=1, memory=4608)
    assert spleen.variables == {"CLARA_TRACE": "2"}
    assert spleen.inputs[0].payload_subpath == "operators/dicom-reader"
    assert pipeline.timeout == 600


def test_typed_example_matches_outputs_by_name() -> None:
    pipeline = load(example("d_typed.yaml"))
    down = pipeline.operator("downstream-op")
    assert down.inputs[1] == OperatorInput(
        path=None,
        from_operator="upstream-op",
        output_name="volume",
        type="array",
        element_type="float32",
        shape=(-1, 512, 512),
    )
    assert down.inputs[0].payload_subpath == "operators/upstream-op/generated-file-data"
    up = pipeline.operator("upstream-op")
    assert up.inputs[0].payload_subpath == "input"
    assert up.inputs[0].output_name == "file-data-in"  # a label only, without `from`
    assert pipeline.downstream("upstream-op") == ("downstream-op",)


PRODUCER = """\
    api-version: 0.2.0
    name: producer
    container:
      image: clara/producer
    input:
      - path: /input
    output:
      - path: /output
"""

CONSUMER = """\
    name: consumer
    parameters:
      input-from: ""
    container:
      image: clara/consumer
      tag: ${{input-from}}-v1
    input:
      - from: ${{ input-from }}
        path: /input
"""


def test_python_client_import_example_with_args() -> None:
    main = """\
        api-version: 0.2.0
        name: sample-pipeline
        operators:
          - name: producer
            import:
              path: producer.yaml
          - name: consumer
            import:
              path: consumer.yaml
              args:
                input-from: producer
    """
    pipeline = load(main, extra={"producer.yaml": PRODUCER, "consumer.yaml": CONSUMER})
    assert pipeline.api_version == "0.2.0"
    consumer = pipeline.operator("consumer")
    assert consumer.upstream == ("producer",)
    assert consumer.container.tag == "producer-v1"
    assert consumer.inputs[0].payload_subpath == "operators/producer"
    assert pipeline.topological_order() == ("producer", "consumer")


def test_imports_from_sub_folders_with_overrides() -> None:
    main = """\
        api-version: 0.4.0
        name: layered
        operators:
          - import: {path: ./ops/producer.yaml}
          - name: second
            import:
              path: ops/../ops/consumer.yaml
              args: {input-from: producer}
            requests: {gpu: 1}
    """
    pipeline = load(main, extra={"ops/consumer.yaml": CONSUMER, "ops/producer.yaml": PRODUCER})
    assert [op.name for op in pipeline.operators] == ["producer", "second"]
    assert pipeline.operator("second").requests == Requests(gpu=1)
    assert pipeline.operator("second").container.image == "clara/consumer"
