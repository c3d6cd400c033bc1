"""The Pipelines service over a real server: our own calls and the official client's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protos.nvidia.clara.platform import common_pb2, pipelines_pb2_grpc
from protos.nvidia.clara.platform import pipelines_pb2 as pb
from shared.errors import ErrorCode
from tests.helpers import RunningServer, run_official

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)

DATA = Path(__file__).parent / "data"


def files(*names: str) -> list[tuple[str, str]]:
    return [(name, (DATA / name).read_text()) for name in names]


async def create(
    stub: pipelines_pb2_grpc.PipelinesStub, parts: list[tuple[str, str]], **fields: object
) -> pb.PipelinesCreateResponse:
    async def requests() -> AsyncIterator[pb.PipelinesCreateRequest]:
        for path, content in parts:
            yield pb.PipelinesCreateRequest(definition=pb.PipelineDefinitionFile(path=path, content=content), **fields)  # type: ignore[arg-type]

    return await stub.Create(requests())


@pytest.fixture
async def stub(platform: RunningServer) -> AsyncIterator[pipelines_pb2_grpc.PipelinesStub]:
    async with platform.channel() as channel:
        yield pipelines_pb2_grpc.PipelinesStub(channel)


async def details(stub: pipelines_pb2_grpc.PipelinesStub, pipeline_id: str) -> list[pb.PipelinesDetailsResponse]:
    request = pb.PipelinesDetailsRequest(pipeline_id=common_pb2.Identifier(value=pipeline_id))
    return [reply async for reply in stub.Details(request)]


async def test_create_with_imports_then_details_shows_each_file_and_the_dag(
    stub: pipelines_pb2_grpc.PipelinesStub,
) -> None:
    created = await create(stub, files("imports.yaml", "producer.yaml", "consumer.yaml"))
    assert created.header.code == 0, created.header.messages
    replies = await details(stub, created.pipeline_id.value)
    assert [r.definition.path for r in replies] == ["imports.yaml", "producer.yaml", "consumer.yaml"]
    assert {r.name for r in replies} == {"sample-pipeline"}
    dag = replies[0].dag
    assert [(n.name, [m.name for m in n.next]) for n in dag] == [("producer", ["consumer"])]


async def test_chunks_of_one_path_are_concatenated_case_insensitively(stub: pipelines_pb2_grpc.PipelinesStub) -> None:
    text = (DATA / "two_operators.yaml").read_text()
    middle = len(text) // 2
    created = await create(stub, [("Pipe.yaml", text[:middle]), ("pipe.YAML", text[middle:])])
    assert created.header.code == 0, created.header.messages
    replies = await details(stub, created.pipeline_id.value)
    assert [(r.definition.path, r.definition.content) for r in replies] == [("Pipe.yaml", text)]
    assert replies[0].dag[0].name == "copier" and replies[0].dag[0].next[0].name == "shouter"


async def test_diamond_dag_lists_a_node_under_each_parent(stub: pipelines_pb2_grpc.PipelinesStub) -> None:
    created = await create(stub, files("diamond.yaml"))
    assert created.header.code == 0, created.header.messages
    (root,) = (await details(stub, created.pipeline_id.value))[0].dag
    assert root.name == "split"
    assert sorted(n.name for n in root.next) == ["left", "right"]
    assert [[m.name for m in n.next] for n in root.next] == [["join"], ["join"]]


async def test_bad_definitions_are_refused_with_loader_codes(stub: pipelines_pb2_grpc.PipelinesStub) -> None:
    broken = await create(stub, [("p.yaml", "api-version: 0.4.0\nname: [unclosed")])
    assert broken.header.code == ErrorCode.PIPELINE_LOAD
    assert broken.header.messages and "p.yaml" in broken.header.messages[0]
    cyclic = await create(stub, [("p.yaml", CYCLE)])
    assert cyclic.header.code == ErrorCode.PIPELINE_DEFINITION
    assert any("cycle" in m for m in cyclic.header.messages)
    listed = [r async for r in stub.List(pb.PipelinesListRequest())]
    assert listed == []  # nothing half-written


async def test_forced_id_and_metadata_rules(stub: pipelines_pb2_grpc.PipelinesStub) -> None:
    forced = "4a1e0b5c-7d3f-4c2a-9e8b-1f2a3b4c5d6e"
    created = await create(
        stub, files("two_operators.yaml"), pipeline_id=common_pb2.Identifier(value=forced), metadata={"Owner": "a"}
    )
    assert created.pipeline_id.value == forced.replace("-", "")
    again = await create(stub, files("two_operators.yaml"), pipeline_id=common_pb2.Identifier(value=forced))
    assert again.header.code == ErrorCode.PIPELINE_STORE
    clash = await stub.AddMetadata(
        pb.PipelinesAddMetadataRequest(pipeline_id=created.pipeline_id, metadata={"owner": "b"})
    )
    assert clash.header.code == ErrorCode.INVALID_METADATA and "'owner' already exists" in clash.header.messages[0]
    too_long = await stub.AddMetadata(
        pb.PipelinesAddMetadataRequest(pipeline_id=created.pipeline_id, metadata={"k" * 129: "v"})
    )
    assert too_long.header.code == ErrorCode.INVALID_METADATA
    kept = await details(stub, created.pipeline_id.value)
    assert dict(kept[0].metadata) == {"Owner": "a"}


@pytest.mark.parametrize(
    ("pipeline_id", "code"),
    [
        ("not-an-id", ErrorCode.INVALID_PIPELINE_ID),
        ("", ErrorCode.INVALID_PIPELINE_ID),
        ("0" * 32, ErrorCode.NO_SUCH_PIPELINE),
    ],
)
async def test_unknown_or_malformed_ids(stub: pipelines_pb2_grpc.PipelinesStub, pipeline_id: str, code: int) -> None:
    replies = await details(stub, pipeline_id)
    assert len(replies) == 1 and replies[0].header.code == code and replies[0].header.messages
    removed = await stub.Remove(pb.PipelinesRemoveRequest(pipeline_id=common_pb2.Identifier(value=pipeline_id)))
    assert removed.header.code == code


async def test_update_replaces_the_definition(stub: pipelines_pb2_grpc.PipelinesStub) -> None:
    created = await create(stub, files("two_operators.yaml"))

    async def update(parts: list[tuple[str, str]]) -> pb.PipelinesUpdateResponse:
        async def requests() -> AsyncIterator[pb.PipelinesUpdateRequest]:
            for path, content in parts:
                yield pb.PipelinesUpdateRequest(
                    pipeline_id=created.pipeline_id, definition=pb.PipelineDefinitionFile(path=path, content=content)
                )

        return await stub.Update(requests())

    bad = await update([("p.yaml", CYCLE)])
    assert bad.header.code == ErrorCode.PIPELINE_DEFINITION
    assert (await details(stub, created.pipeline_id.value))[0].name == "copy-and-shout"
    good = await update(files("imports.yaml", "producer.yaml", "consumer.yaml"))
    assert good.header.code == 0
    replies = await details(stub, created.pipeline_id.value)
    assert replies[0].name == "sample-pipeline" and len(replies) == 3


def test_official_pipelines_client(served: RunningServer, official_python: Path) -> None:
    result = run_official(
        official_python,
        "pipelines_flow.py",
        served.address,
        *(str(DATA / name) for name in ("imports.yaml", "producer.yaml", "consumer.yaml")),
    )
    assert isinstance(result, dict)
    assert len(result["id"]) == 32
    assert result["listed"] == [[result["id"], "sample-pipeline", {"owner": "tests"}]]
    assert result["details_name"] == "sample-pipeline"
    assert result["details_files"] == 3
    assert result["details_metadata"] == {"owner": "tests"}
    assert result["added"] == {"owner": "tests", "stage": "dev"}
    assert result["removed"] == {"stage": "dev"}
    assert result["missing_error"] and "no pipeline" in result["missing_error"]


CYCLE = """api-version: 0.4.0
name: cyclic
operators:
- name: a
  container: {image: busybox, command: [true]}
  input: [{from: b, path: /in}]
  output: [{path: /out}]
- name: b
  container: {image: busybox, command: [true]}
  input: [{from: a, path: /in}]
  output: [{path: /out}]
"""
