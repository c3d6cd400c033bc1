"""The generated modules match the .proto files, and the wire names are Clara's."""

from __future__ import annotations

import pytest

from protos import generate
from protos.nvidia.clara.platform import common_pb2, jobs_pb2, payloads_pb2, pipelines_pb2


def test_generated_modules_are_fresh() -> None:
    assert generate.main(["--check"]) == 0, "run `python -m protos.generate`"


@pytest.mark.parametrize(
    ("module", "service", "methods"),
    [
        (
            jobs_pb2,
            "Jobs",
            {"AddMetadata", "Cancel", "Create", "List", "ReadLogs", "RemoveMetadata", "Start", "Status"},
        ),
        (
            pipelines_pb2,
            "Pipelines",
            {"AddMetadata", "Create", "Details", "List", "Remove", "RemoveMetadata", "Update"},
        ),
        (
            payloads_pb2,
            "Payloads",
            {"AddMetadata", "Create", "Delete", "Details", "Download", "Remove", "RemoveMetadata", "Upload"},
        ),
    ],
)
def test_services_have_clara_full_names(module: object, service: str, methods: set[str]) -> None:
    descriptor = module.DESCRIPTOR.services_by_name[service]  # type: ignore[attr-defined]
    assert descriptor.full_name == f"nvidia.clara.platform.{service}"
    assert {m.name for m in descriptor.methods} == methods


def test_field_numbers_that_clients_depend_on() -> None:
    status = jobs_pb2.JobsStatusResponse.DESCRIPTOR.fields_by_name
    assert (status["operator_details"].number, status["dag"].number, status["messages"].number) == (16, 18, 8)
    start = jobs_pb2.JobsStartRequest.DESCRIPTOR.fields_by_name
    assert start["Variables"].number == 3
    assert common_pb2.ResponseHeader.DESCRIPTOR.fields_by_name["code"].type == 17  # TYPE_SINT32
    assert common_pb2.Timestamp.DESCRIPTOR.fields_by_name["value"].type == 18  # TYPE_SINT64
