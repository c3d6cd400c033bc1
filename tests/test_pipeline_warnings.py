"""Pipelines.Create and Update name the keys a definition holds that the language does not define.

Such keys are accepted as before (code 0, an id); the response header's ``messages`` say where each one is
(file:line) so authors see their typos. Over a real server: our raw stubs, and NVIDIA's official client,
which does not show header messages but must keep working.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import grpc
import pytest

from protos.nvidia.clara.platform import common_pb2, pipelines_pb2_grpc
from protos.nvidia.clara.platform import pipelines_pb2 as pb
from tests.helpers import RunningServer, run_official

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)

DATA = Path(__file__).parent / "data"
T = TypeVar("T")

PIPELINE = """\
api-version: 0.4.0
name: found-in-the-wild
operators:
- name: reader
  container:
    image: busybox
    variables: {MODE: fast}
  hostVolumePath: /data
  output: [{path: /out}]
- import: {path: ops/writer.yaml}
  input: [{from: reader, path: /in}]
"""
WRITER = """\
name: writer
container: {image: busybox}
reqests: {cpu: 1}
"""
FILES = [("pipeline.yaml", PIPELINE), ("ops/writer.yaml", WRITER)]
UNKNOWN = "is not part of the pipeline definition language and is ignored"
WARNINGS = [
    f"warning: pipeline.yaml:7: key 'container.variables' of operator 'reader' {UNKNOWN}",
    f"warning: pipeline.yaml:8: key 'hostVolumePath' of operator 'reader' {UNKNOWN}",
    f"warning: ops/writer.yaml:3: key 'reqests' of operator 'writer' {UNKNOWN}",
]


def create_requests(parts: list[tuple[str, str]]) -> list[pb.PipelinesCreateRequest]:
    return [pb.PipelinesCreateRequest(definition=pb.PipelineDefinitionFile(path=p, content=c)) for p, c in parts]


def update_requests(pipeline_id: str, parts: list[tuple[str, str]]) -> list[pb.PipelinesUpdateRequest]:
    return [
        pb.PipelinesUpdateRequest(
            pipeline_id=common_pb2.Identifier(value=pipeline_id),
            definition=pb.PipelineDefinitionFile(path=path, content=content),
        )
        for path, content in parts
    ]


async def stream(requests: list[T]) -> AsyncIterator[T]:
    """A client stream for grpc.aio."""
    for request in requests:
        yield request


@pytest.fixture
async def stub(platform: RunningServer) -> AsyncIterator[pipelines_pb2_grpc.PipelinesStub]:
    async with platform.channel() as channel:
        yield pipelines_pb2_grpc.PipelinesStub(channel)


async def test_create_names_each_ignored_key_and_keeps_the_definition(
    stub: pipelines_pb2_grpc.PipelinesStub,
) -> None:
    created = await stub.Create(stream(create_requests(FILES)))
    assert created.header.code == 0
    assert list(created.header.messages) == WARNINGS
    assert len(created.pipeline_id.value) == 32
    request = pb.PipelinesDetailsRequest(pipeline_id=created.pipeline_id)
    replies = [reply async for reply in stub.Details(request)]
    assert [(r.definition.path, r.definition.content) for r in replies] == FILES  # kept as sent
    assert [(node.name, [n.name for n in node.next]) for node in replies[0].dag] == [("reader", ["writer"])]


async def test_update_names_them_too_and_a_clean_definition_has_no_message(
    stub: pipelines_pb2_grpc.PipelinesStub,
) -> None:
    clean = [("two_operators.yaml", (DATA / "two_operators.yaml").read_text())]
    created = await stub.Create(stream(create_requests(clean)))
    assert (created.header.code, list(created.header.messages)) == (0, [])
    updated = await stub.Update(stream(update_requests(created.pipeline_id.value, FILES)))
    assert (updated.header.code, list(updated.header.messages)) == (0, WARNINGS)
    back = await stub.Update(stream(update_requests(created.pipeline_id.value, clean)))
    assert (back.header.code, list(back.header.messages)) == (0, [])


def test_the_official_client_still_gets_an_id(served: RunningServer, official_python: Path, tmp_path: Path) -> None:
    """The official client ignores header messages on success; a raw stub of the same generated code reads
    them from the same server."""
    for path, content in FILES:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    sent = [str(tmp_path / path) for path, _ in FILES]
    result = run_official(official_python, "pipeline_warnings.py", served.address, *sent)
    assert isinstance(result, dict)
    assert len(result["id"]) == 32
    assert result["details_name"] == "found-in-the-wild"
    assert result["details_files"] == len(FILES)

    with grpc.insecure_channel(served.address) as channel:
        raw = pipelines_pb2_grpc.PipelinesStub(channel)  # type: ignore[no-untyped-call]
        created = raw.Create(iter(create_requests(FILES)))
        updated = raw.Update(iter(update_requests(result["id"], FILES)))
    assert (created.header.code, list(created.header.messages)) == (0, WARNINGS)
    assert (updated.header.code, list(updated.header.messages)) == (0, WARNINGS)
