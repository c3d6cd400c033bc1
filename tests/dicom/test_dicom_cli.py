"""``claret dicom status|associations|exports`` as a user on another machine runs them: the installed program, in
a process of its own, talking gRPC (``claret.dicom.Dicom``) to a platform serving the DICOM service; and that API's
refusals as gRPC statuses."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from claret.client import ClientError
from protos.claret_api import dicom_pb2, dicom_pb2_grpc
from services.dicom import tables
from services.dicom.servicer import EXPORT_COLUMNS_NOT_SENT
from tests.dicom.test_dicom_service import configuration, dicom_platform, eventually, one_ended_job
from tests.dicom.tools import ct_file, echo, store
from tests.helpers import RunningServer, free_port

CLARET = Path(sys.executable).with_name("claret")
PROGRAM = [str(CLARET)] if CLARET.exists() else [sys.executable, "-m", "claret"]


async def claret(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``claret --host ADDRESS ARGS...`` in a thread: the platform answering it runs in this event loop."""
    env = {key: value for key, value in os.environ.items() if key != "CLARET_HOST_ADDRESS"}
    command = [*PROGRAM, "--host", address, *args]
    return await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=60)


async def ok(address: str, *args: str) -> str:
    """The stdout of a command that must succeed, saying nothing on stderr."""
    done = await claret(address, *args)
    assert done.returncode == 0 and done.stderr == "", (done.stdout, done.stderr)
    return done.stdout


def lines_with(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if word in line.split()]


def test_the_messages_carry_every_column_of_the_tables() -> None:
    """The servicer sends rows by column name: the messages must have them all (the exporter's join columns aside)."""
    association = {f.name for f in dicom_pb2.DicomAssociation.DESCRIPTOR.fields}
    assert association == {f.name for f in dataclasses.fields(tables.AssociationRow)}
    export = {f.name for f in dicom_pb2.DicomExport.DESCRIPTOR.fields}
    assert export == {f.name for f in dataclasses.fields(tables.ExportRow)} - EXPORT_COLUMNS_NOT_SENT


async def test_status_shows_the_configuration_and_then_why_a_rewritten_file_was_refused(tmp_path: Path) -> None:
    async with dicom_platform(tmp_path, configuration(free_port())) as dicom:
        address = dicom.client.address
        text = await ok(address, "dicom", "status")
        [ae_title] = lines_with(text, "CLARA_CT")
        assert "derive=dicom-derive" in ae_title.split() and "derive -> ORTHANC" in ae_title, text
        assert ["ORTHANC", "ORTHANC", "127.0.0.1", "1"] in [line.split() for line in text.splitlines()], text
        assert f"Config: {dicom.config_path} (loaded " in text and "Problem:" not in text
        document = json.loads(await ok(address, "dicom", "status", "--output", "json"))
        assert (document["problem"], document["scp_port"], document["scu_ae_title"]) == (None, dicom.port, "CLARASCU")
        [entry] = document["ae_titles"]
        assert entry["pipelines"] == [{"key": "derive", "ref": "dicom-derive"}]
        assert (entry["grouping"], entry["export"]["destinations"]) == ("association", ["ORTHANC"])

        dicom.rewrite("dicom:\n  scp:\n    aeTitles:\n      - aeTitle: THIS_TITLE_IS_FAR_TOO_LONG\n")

        async def refused() -> str | None:
            text = await ok(address, "dicom", "status")
            return text if "Problem:" in text else None

        text = await eventually(refused, within=15, what="the refusal shown by `claret dicom status`")
        [problem] = [line for line in text.splitlines() if line.startswith("Problem: ")]
        assert problem.startswith(f"Problem: {dicom.config_path}:4: "), problem
        assert "THIS_TITLE_IS_FAR_TOO_LONG" in problem and "16" in problem, problem
        assert lines_with(text, "CLARA_CT"), text  # the last good configuration stays in force


async def test_associations_show_a_rejected_association_with_its_reason(tmp_path: Path) -> None:
    async with dicom_platform(tmp_path, configuration(free_port())) as dicom:
        address = dicom.client.address
        assert (await asyncio.to_thread(echo, dicom.port, "NOPE")).returncode != 0
        assert (await asyncio.to_thread(echo, dicom.port, "CLARA_CT")).returncode == 0

        async def both() -> str | None:
            text = await ok(address, "dicom", "associations")
            return text if lines_with(text, "NOPE") and lines_with(text, "CLARA_CT") else None

        text = await eventually(both, what="both associations listed by `claret dicom associations`")
        [rejected] = lines_with(text, "NOPE")
        assert "rejected" in rejected.split() and "called AE title 'NOPE' is not configured" in rejected, text
        assert "released" in lines_with(text, "CLARA_CT")[0].split(), text
        newest = await ok(address, "dicom", "associations", "-n", "1")
        assert len(newest.splitlines()) == 2 and lines_with(newest, "CLARA_CT"), newest  # the header and one row


async def test_exports_as_json_show_an_export_that_failed_and_its_attempts(tmp_path: Path) -> None:
    document = configuration(free_port(), orthanc_port=free_port())  # nothing listens there
    document["dicom"]["scu"]["export"]["maximumRetries"] = 0  # the first failure is final
    async with dicom_platform(tmp_path, document) as dicom:
        assert (await asyncio.to_thread(store, dicom.port, "CLARA_CT", [ct_file()])).returncode == 0
        job = await one_ended_job(dicom, instances=1)

        async def failed() -> list[dict[str, Any]]:
            exports: list[dict[str, Any]] = json.loads(
                await ok(dicom.client.address, "dicom", "exports", "--output", "json")
            )
            return exports if exports and exports[0]["state"] == "failed" else []

        [export] = await eventually(failed, what="the failed export listed by `claret dicom exports`")
        assert (export["job_id"], export["destination"], export["attempts"]) == (job.id, "ORTHANC", 1), export
        assert export["files"] >= 1 and "ORTHANC" in export["error"] and export["updated"], export
        assert "payload_id" not in export and "called" not in export


async def test_a_negative_limit_is_invalid_argument_and_a_large_one_is_lowered(tmp_path: Path) -> None:
    async with dicom_platform(tmp_path, configuration(free_port())) as dicom:
        assert await dicom.client.health("claret.dicom.Dicom") == "SERVING"
        async with grpc.aio.insecure_channel(dicom.client.address) as channel:
            stub = dicom_pb2_grpc.DicomStub(channel)  # type: ignore[no-untyped-call]
            for method in (stub.ListAssociations, stub.ListExports):
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await method(dicom_pb2.DicomListRequest(limit=-1))
                assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert raised.value.details() == "limit must be 0 (meaning 50) or more, not -1"
                await method(dicom_pb2.DicomListRequest(limit=2**31 - 1))  # answered, up to 1000 rows
        with pytest.raises(ClientError, match=r"refused the call: limit must be 0 \(meaning 50\) or more, not -5"):
            await dicom.client.dicom_exports(-5)


async def test_a_platform_without_the_dicom_service_says_so(platform: RunningServer) -> None:
    done = await claret(platform.address, "dicom", "status")
    assert done.returncode == 1 and done.stdout == ""
    assert (
        done.stderr
        == f"error: the platform at {platform.address} does not run the DICOM service (claret.dicom.Dicom)\n"
    )
