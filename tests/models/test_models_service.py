"""The Models service through real servers: uploads (streamed, checked, atomic), downloads of the bytes as
uploaded, the catalogs and instances that list models, metadata, and the official client's ModelsClient."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from protos.nvidia.clara.platform import common_pb2, models_pb2_grpc
from protos.nvidia.clara.platform import models_pb2 as pb
from shared.errors import ErrorCode
from tests.helpers import free_port, run_official, serve_process, wait_for_port
from tests.jobs_flow import serving

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)

CONFIG = b'name: "adder"\nbackend: "python"\n'


def model_zip(name: str = "adder", body: bytes = b"print('v1')\n", config: bytes | None = None) -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr(
            f"{name}/config.pbtxt", config if config is not None else CONFIG.replace(b"adder", name.encode())
        )
        archive.writestr(f"{name}/1/model.py", body)
    return data.getvalue()


def ident(value: str) -> common_pb2.Identifier:
    return common_pb2.Identifier(value=value)


Stub = models_pb2_grpc.ModelsStub


async def upload(stub: Stub, data: bytes, name: str = "adder", chunk: int = 1000) -> pb.ModelsUploadModelResponse:
    details = pb.ModelDetails(name=name, type=pb.MODEL_TYPE_PY_TORCH)

    async def requests() -> AsyncIterator[pb.ModelsUploadModelRequest]:
        for start in range(0, max(len(data), 1), chunk):
            yield pb.ModelsUploadModelRequest(details=details, data=data[start : start + chunk])

    return await stub.UploadModel(requests())


async def download(stub: Stub, model_id: str) -> tuple[list[pb.ModelsDownloadModelResponse], bytes]:
    replies = [r async for r in stub.DownloadModel(pb.ModelsDownloadModelRequest(model_id=ident(model_id)))]
    return replies, b"".join(r.data for r in replies)


async def listed(stub: Stub) -> list[tuple[str, str]]:
    return [(m.model_id.value, m.name) async for r in stub.ListModels(pb.ModelsListModelsRequest()) for m in r.models]


async def test_a_model_uploads_lists_downloads_as_uploaded_is_replaced_by_name_and_deletes(tmp_path: Path) -> None:
    async with serving(tmp_path) as clara:
        stub = models_pb2_grpc.ModelsStub(clara.channel)
        first = model_zip()
        reply = await upload(stub, first)
        assert reply.header.code == 0, reply.header.messages
        model_id = reply.details.model_id.value
        assert (reply.details.name, reply.details.type) == ("adder", pb.MODEL_TYPE_PY_TORCH)
        assert await listed(stub) == [(model_id, "adder")]
        replies, data = await download(stub, model_id)
        assert data == first and replies[0].details.name == "adder" and replies[0].header.code == 0
        folder = tmp_path / "data" / "models" / "repository" / "adder"
        assert (folder / "1" / "model.py").read_bytes() == b"print('v1')\n"  # Triton's layout, ready to serve

        added = await stub.AddMetadata(pb.ModelsAddMetadataRequest(model_id=ident(model_id), metadata={"owner": "x"}))
        assert dict(added.metadata) == {"owner": "x"}
        second = model_zip(body=b"print('v2')\n")
        again = await upload(stub, second, chunk=7)
        assert again.details.model_id.value == model_id and dict(again.details.metadata) == {"owner": "x"}
        assert (await download(stub, model_id))[1] == second
        assert (folder / "1" / "model.py").read_bytes() == b"print('v2')\n"
        removed = await stub.RemoveMetadata(pb.ModelsRemoveMetadataRequest(model_id=ident(model_id), keys=["owner"]))
        assert dict(removed.metadata) == {}

        deleted = await stub.DeleteModel(pb.ModelsDeleteModelRequest(model_id=ident(model_id)))
        assert deleted.header.code == 0 and deleted.model_id.value == model_id
        assert await listed(stub) == [] and not folder.exists()
        gone = await stub.DeleteModel(pb.ModelsDeleteModelRequest(model_id=ident(model_id)))
        assert gone.header.code == ErrorCode.NO_SUCH_MODEL and model_id in gone.header.messages[0]
        replies, _ = await download(stub, model_id)
        assert [r.header.code for r in replies] == [ErrorCode.NO_SUCH_MODEL]


@pytest.mark.parametrize(
    ("data", "name", "words"),
    [
        (b"", "adder", "carried no model data"),
        (b"not an archive", "adder", "neither a zip nor a tar archive"),
        (model_zip(config=b'name: "other"\n'), "adder", "names the model 'other', not 'adder'"),
        (model_zip(), "bad name", "is not a model name"),
    ],
)
async def test_a_bad_upload_is_refused_with_its_reason_and_leaves_nothing(
    tmp_path: Path, data: bytes, name: str, words: str
) -> None:
    async with serving(tmp_path) as clara:
        stub = models_pb2_grpc.ModelsStub(clara.channel)
        reply = await upload(stub, data, name=name)
        assert reply.header.code == ErrorCode.INVALID_MODEL and words in " ".join(reply.header.messages), reply.header
        assert await listed(stub) == []
        root = tmp_path / "data" / "models"
        assert list((root / "repository").iterdir()) == [] and list((root / ".incoming").iterdir()) == []


@pytest.mark.parametrize("kind", ["catalog", "instance"])
async def test_catalogs_and_instances_list_models_in_order_and_lose_deleted_ones(tmp_path: Path, kind: str) -> None:
    Kind = kind.capitalize()
    async with serving(tmp_path) as clara:
        stub = models_pb2_grpc.ModelsStub(clara.channel)
        a = (await upload(stub, model_zip("a"), name="a")).details.model_id.value
        b = (await upload(stub, model_zip("b"), name="b")).details.model_id.value
        created = await getattr(stub, f"Create{Kind}")(getattr(pb, f"ModelsCreate{Kind}Request")())
        list_id = getattr(created, f"{kind}_id").value
        key = {f"{kind}_id": ident(list_id)}

        async def update(*model_ids: str) -> common_pb2.ResponseHeader:
            async def requests() -> AsyncIterator[object]:
                yield getattr(pb, f"ModelsUpdate{Kind}Request")(**key, model_ids=[ident(m) for m in model_ids])

            return (await getattr(stub, f"Update{Kind}")(requests())).header

        async def read() -> tuple[int, list[str]]:
            replies = [r async for r in getattr(stub, f"Read{Kind}")(getattr(pb, f"ModelsRead{Kind}Request")(**key))]
            return (replies[0].header.code if replies else 0), [m.name for r in replies for m in r.models]

        assert await read() == (0, [])
        empty = getattr(stub, f"Read{Kind}")(getattr(pb, f"ModelsRead{Kind}Request")(**key))
        assert [r async for r in empty] == []  # an empty answer is no message at all
        assert (await update(b, a)).code == 0
        assert await read() == (0, ["b", "a"])
        refused = await update(a, "f" * 32)
        assert refused.code == ErrorCode.NO_SUCH_MODEL and "f" * 32 in refused.messages[0]
        assert await read() == (0, ["b", "a"])  # refused whole
        field = "catalogs" if kind == "catalog" else "instances"
        every = [
            c
            async for r in getattr(stub, f"List{Kind}s")(getattr(pb, f"ModelsList{Kind}sRequest")())
            for c in getattr(r, field)
        ]
        assert [(c.catalog_id.value, [m.name for m in c.models]) for c in every] == [(list_id, ["b", "a"])]

        await stub.DeleteModel(pb.ModelsDeleteModelRequest(model_id=ident(b)))
        assert await read() == (0, ["a"])
        deleted = await getattr(stub, f"Delete{Kind}")(getattr(pb, f"ModelsDelete{Kind}Request")(**key))
        assert deleted.header.code == 0
        code = ErrorCode.NO_SUCH_CATALOG if kind == "catalog" else ErrorCode.NO_SUCH_INSTANCE
        assert (await read())[0] == code


WORKING = {
    "create_catalog": {"ok": 32},
    "create_instance": {"ok": 32},
    "read_catalog": {"ok": []},  # the catalog is empty (update_catalog cannot fill it): no message, None
    "add_metadata": {"ok": {"owner": "clinic"}},
    "remove_metadata": {"ok": {}},
    "delete_catalog": {"ok": None},
}
BROKEN_IN_THE_CLIENT = {
    # ModelsClient 0.8.1.7 fails on its side, before the request leaves or on any answer it gets:
    "update_catalog": "_InactiveRpcError",  # passes a list where its grpcio wants an iterator
    "update_instance": "ValueError",  # builds ModelsReadInstanceRequest(model_ids=...)
    "read_instance": "ValueError",  # builds ModelsReadCatalogRequest(instance_id=...)
    "list_models": "AttributeError",  # ModelDetails(other=resp.models): a repeated field read as one message
    "download_model": "AttributeError",  # calls stub.Download; the RPC is DownloadModel
    "upload_model": "ValueError",  # sets ModelDetails.tags and .model_type, which the proto has not
    "delete_instance": "ValueError",  # puts the id in a catalog_id field the request has not
    "delete_model": "ValueError",  # the same
}


def official_flow(official_python: Path, tmp_path: Path, address: str) -> dict[str, dict[str, object]]:
    """Upload a model (raw stub: the client's upload cannot), then every ModelsClient method on it."""
    archive = tmp_path / "adder.zip"
    archive.write_bytes(model_zip())

    async def uploaded() -> str:
        async with grpc.aio.insecure_channel(address) as channel:
            return (await upload(Stub(channel), archive.read_bytes())).details.model_id.value

    model_id = asyncio.run(uploaded())
    result = run_official(official_python, "models_flow.py", address, model_id, str(archive))
    assert isinstance(result, dict)
    return result


def check_official(outcome: dict[str, dict[str, object]]) -> None:
    assert {name: outcome[name] for name in WORKING} == WORKING
    assert {name: outcome[name].get("raised") for name in BROKEN_IN_THE_CLIENT} == BROKEN_IN_THE_CLIENT
    assert outcome["read_deleted_catalog"]["raised"] == "Exception"  # the platform's refusal, as the client says it
    assert "no model catalog with id" in str(outcome["read_deleted_catalog"]["message"])


def test_the_official_models_client_against_claret_serve(official_python: Path, tmp_path: Path) -> None:
    with serve_process(tmp_path / "data") as (address, _):
        check_official(official_flow(official_python, tmp_path, address))


def test_the_official_models_client_against_the_models_service_alone(official_python: Path, tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "services.models", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    process = subprocess.Popen(command, cwd=tmp_path)
    try:
        wait_for_port(port, process)
        check_official(official_flow(official_python, tmp_path, f"127.0.0.1:{port}"))
    finally:
        process.terminate()
        process.wait(timeout=15)


async def test_start_is_refused_while_an_operator_lists_a_model_the_repository_lacks(tmp_path: Path) -> None:
    text = """api-version: 0.6.0
name: infer
operators:
- name: classify
  container: {image: busybox, command: [true]}
  models:
  - name: adder
  - name: missing
"""
    async with serving(tmp_path) as clara:
        job = await clara.job(await clara.pipeline(text))
        refused = await clara.start(job.job_id.value)
        assert refused.header.code == ErrorCode.NO_SUCH_MODEL
        assert list(refused.header.messages) == [
            "operator 'classify' needs model 'adder', which is not in the model repository",
            "operator 'classify' needs model 'missing', which is not in the model repository",
        ]
        stub = Stub(clara.channel)
        await upload(stub, model_zip("adder"), name="adder")
        await upload(stub, model_zip("missing"), name="missing")
        no_triton = await clara.start(job.job_id.value)  # this platform has none (tests/models/test_triton.py)
        assert no_triton.header.code == ErrorCode.TRITON_UNAVAILABLE, no_triton.header


async def test_the_cli_creates_lists_downloads_and_deletes_models(tmp_path: Path) -> None:
    folder = tmp_path / "adder"
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_bytes(CONFIG)
    (folder / "1" / "model.py").write_bytes(b"print('cli')\n")
    async with serving(tmp_path) as clara:

        async def cli(*args: str) -> str:
            command = [sys.executable, "-m", "claret", "--host", clara.address, *args]
            process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = await process.communicate()
            assert process.returncode == 0, err.decode()
            return out.decode()

        created = await cli("create", "model", "-p", str(folder), "-t", "pytorch")
        model_id = created.strip().removeprefix("MODEL_ID:")
        assert json.loads(await cli("list", "models", "--output", "json")) == [
            {"model_id": model_id, "name": "adder", "type": "MODEL_TYPE_PY_TORCH", "metadata": {}}
        ]
        await cli("download", "--model", model_id[:6], str(tmp_path / "back.zip"))
        with zipfile.ZipFile(tmp_path / "back.zip") as archive:
            assert archive.read("1/model.py") == b"print('cli')\n" and archive.read("config.pbtxt") == CONFIG
        assert (await cli("delete", "models", model_id[:6])).strip() == f"deleted model {model_id}"
        assert json.loads(await cli("list", "models", "--output", "json")) == []
