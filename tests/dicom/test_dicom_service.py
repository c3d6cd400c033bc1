"""The DICOM service end to end, with real DICOM peers: dcmtk's echoscu/storescu send pydicom's CT and MR
test files to Claret's SCP, a sandboxed pipeline (python3 with pydicom) derives new instances, and they
arrive at a real Orthanc, checked through its REST API. Also what Claret refuses, and how."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pydicom
import pytest
import yaml
from pynetdicom import AE
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from claret.client import PlatformClient
from claret.records import Job, JobState, JobStatus
from services.dicom import tables
from services.dicom.incoming import IncomingStore, Released
from services.dicom.instances import inspect
from shared.config import DEFAULT_SERVICES
from shared.resources import Resources
from tests.dicom.tools import (
    Orthanc,
    abort_after_store,
    ct_file,
    echo,
    make_instances,
    mr_file,
    send_raw,
    store,
    write_raw_instance,
)
from tests.helpers import ROOT, free_port, make_settings, start_in_process

BOTH_STORES = True  # each test on SQLite and on PostgreSQL (tests/conftest.py)

DERIVE = (ROOT / "tests" / "data" / "dicom" / "derive.yaml").read_text()
T = TypeVar("T")


def configuration(port: int, orthanc_port: int = 1, **ae: Any) -> dict[str, Any]:
    """One AE title CLARA_CT mapped to the derive pipeline, exporting to ORTHANC; ``ae`` overrides its keys."""
    ae_title: dict[str, Any] = {
        "aeTitle": "CLARA_CT",
        "processorSettings": {"pipeline-derive": "dicom-derive"},
        "export": {"operators": ["derive"], "destinations": ["ORTHANC"]},
        **ae,
    }
    return {
        "dicom": {
            "scp": {"port": port, "aeTitles": [ae_title]},
            "scu": {
                "aeTitle": "CLARASCU",
                "export": {"maximumRetries": 2, "retryDelaySeconds": 0.2},
                "destinations": [
                    {"name": "ORTHANC", "aeTitle": "ORTHANC", "hostIp": "127.0.0.1", "port": orthanc_port}
                ],
            },
        },
        "storage": {"watermarkPercent": 99.9, "reserveSpaceGB": 0},
    }


@dataclass
class Dicom:
    """A platform serving the DICOM service, a client for it, and where the SCP listens."""

    port: int
    client: PlatformClient
    resources: Resources
    config_path: Path

    @property
    def incoming(self) -> Path:
        return self.resources.settings.data_dir / "dicom"

    async def dicom_jobs(self) -> list[Job]:
        return [job for job in await self.client.list_jobs() if job.name.startswith("CLARA_")]

    async def associations(self) -> list[tables.AssociationRow]:
        return await self.resources.db.read(lambda conn: tables.recent_associations(conn, 100))

    async def exports(self) -> list[tables.ExportRow]:
        return await self.resources.db.read(lambda conn: tables.recent_exports(conn, 100))

    def rewrite(self, document: dict[str, Any] | str) -> None:
        text = document if isinstance(document, str) else yaml.safe_dump(document)
        temp = self.config_path.with_suffix(".new")
        temp.write_text(text)
        os.replace(temp, self.config_path)


@asynccontextmanager
async def dicom_platform(tmp_path: Path, document: dict[str, Any]) -> AsyncIterator[Dicom]:
    config_path = tmp_path / "dicom.yaml"
    config_path.write_text(yaml.safe_dump(document))
    settings = make_settings(
        tmp_path, port=free_port(), dicom_config=config_path, services=(*DEFAULT_SERVICES, "dicom")
    )
    server, resources = await start_in_process(settings)
    try:
        async with PlatformClient(f"127.0.0.1:{server.port}") as client:
            await client.create_pipeline([("derive.yaml", DERIVE)])
            yield Dicom(document["dicom"]["scp"]["port"], client, resources, config_path)
    finally:
        await server.stop(grace=1)
        await resources.close()


async def eventually(probe: Callable[[], Awaitable[T | None]], within: float = 30, what: str = "") -> T:
    """Await ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.2)


async def one_ended_job(dicom: Dicom, instances: int) -> Job:
    async def ended() -> Job | None:
        jobs = await dicom.dicom_jobs()
        if len(jobs) == 1 and jobs[0].state is JobState.STOPPED:
            return await dicom.client.job_status(jobs[0].id)
        assert len(jobs) <= 1, jobs
        return None

    job = await eventually(ended, what="a job made of the received instances ended")
    assert job.status is JobStatus.HEALTHY, job.messages
    assert job.metadata["dicom.instances"] == str(instances)
    return job


def study_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


async def test_a_study_from_storescu_runs_the_mapped_pipeline_and_the_results_reach_orthanc(tmp_path: Path) -> None:
    with Orthanc(tmp_path / "orthanc") as pacs:
        async with dicom_platform(tmp_path, configuration(free_port(), pacs.dicom_port)) as dicom:
            assert (await asyncio.to_thread(echo, dicom.port, "CLARA_CT")).returncode == 0
            sent = await asyncio.to_thread(store, dicom.port, "CLARA_CT", [ct_file(), mr_file()])
            assert sent.returncode == 0, sent.stdout + sent.stderr

            job = await one_ended_job(dicom, instances=2)
            studies = sorted({study_uid(ct_file()), study_uid(mr_file())})
            assert job.metadata["dicom.called_ae"] == "CLARA_CT"
            assert job.metadata["dicom.calling_ae"] == "STORESCU"
            assert job.metadata["dicom.study_uids"] == ",".join(studies)
            assert len(job.metadata["dicom.series_uids"].split(",")) == 2

            await eventually(lambda: _metadata(dicom, job.id, "dicom.export.ORTHANC"), what="the export's outcome")
            job = await dicom.client.job_status(job.id)
            assert job.metadata["dicom.export.ORTHANC"] == "sent 2 files"
            received = pacs.instances()
            assert len(received) == 2
            tags = [pacs.instance_tags(instance) for instance in received]
            assert sorted(t["StudyInstanceUID"] for t in tags) == studies  # filed under the studies sent
            assert {t["SeriesDescription"] for t in tags} == {"CLARET DERIVED"}
            assert leftovers(dicom.incoming) == []  # the instances moved into the job's payload
            [association] = [a for a in await dicom.associations() if a.instances]
            assert (association.outcome, association.calling, association.instances) == ("released", "STORESCU", 2)
            sample = dicom.resources.metrics.registry.get_sample_value
            assert sample("claret_dicom_instances_received_total", {"outcome": "stored"}) == 2
            assert sample("claret_dicom_associations_total", {"outcome": "released"}) == 2  # the echo's too
            assert sample("claret_dicom_jobs_created_total") == 1
            assert sample("claret_dicom_exports_total", {"outcome": "sent"}) == 1


async def _metadata(dicom: Dicom, job_id: str, key: str) -> str | None:
    return (await dicom.client.job_status(job_id)).metadata.get(key)


async def test_unknown_called_ae_title_is_rejected_and_recorded(tmp_path: Path) -> None:
    async with dicom_platform(tmp_path, configuration(free_port())) as dicom:
        refused = await asyncio.to_thread(store, dicom.port, "NOT_CONFIGURED", [ct_file()])
        assert refused.returncode != 0
        assert "Called AE Title Not Recognized" in refused.stdout + refused.stderr
        [row] = await eventually(dicom.associations, what="the rejection recorded")
        assert (row.outcome, row.called) == ("rejected", "NOT_CONFIGURED")
        assert "not configured" in row.reason
        assert leftovers(dicom.incoming) == [] and await dicom.dicom_jobs() == []


async def test_with_sources_set_an_unknown_calling_ae_title_is_rejected(tmp_path: Path) -> None:
    document = configuration(free_port())
    document["dicom"]["scp"]["sources"] = [{"aeTitle": "PACS1", "hostIp": "127.0.0.1"}]
    async with dicom_platform(tmp_path, document) as dicom:
        refused = await asyncio.to_thread(echo, dicom.port, "CLARA_CT", "INTRUDER")
        assert refused.returncode != 0
        assert "Calling AE Title Not Recognized" in refused.stdout + refused.stderr
        assert (await asyncio.to_thread(echo, dicom.port, "CLARA_CT", "PACS1")).returncode == 0

        async def both_recorded() -> list[str]:
            outcomes = sorted(row.outcome for row in await dicom.associations())
            return outcomes if len(outcomes) == 2 else []

        assert await eventually(both_recorded, what="both associations recorded") == ["rejected", "released"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"this is not DICOM at all, whatever the file meta says" * 4, "not DICOM bytes"),
        (None, "a dataset cut off in its pixel data"),
    ],
)
async def test_non_dicom_bytes_and_a_truncated_dataset_are_refused_and_nothing_is_stored(
    tmp_path: Path, body: bytes | None, reason: str
) -> None:
    original = pydicom.dcmread(ct_file())
    if body is None:
        body = _dataset_bytes(ct_file())[:-1000]  # the last 1000 bytes of the pixel data are lost
    path = write_raw_instance(tmp_path / "bad.dcm", original.SOPClassUID, original.SOPInstanceUID, body)
    async with dicom_platform(tmp_path, configuration(free_port())) as dicom:
        status = await asyncio.to_thread(send_raw, dicom.port, "CLARA_CT", path)
        assert status == 0xC000, (reason, hex(status))
        await eventually(dicom.associations, what="the association's record")
        await asyncio.sleep(0.5)
        assert leftovers(dicom.incoming) == [] and await dicom.dicom_jobs() == []


def _dataset_bytes(path: Path) -> bytes:
    """The data set of a DICOM file as encoded, without preamble and File Meta group."""
    _, offset = split_dataset(path)
    return path.read_bytes()[offset:]


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # pydicom's, at the hostile UID the test sends
async def test_an_instance_whose_uid_is_a_path_is_refused(tmp_path: Path) -> None:
    hostile = pydicom.dcmread(ct_file())
    hostile.SOPInstanceUID = "1.2/../../../escape"
    hostile.file_meta.MediaStorageSOPInstanceUID = hostile.SOPInstanceUID
    path = tmp_path / "hostile.dcm"
    hostile.save_as(path)
    async with dicom_platform(tmp_path, configuration(free_port())) as dicom:
        status = await asyncio.to_thread(send_raw, dicom.port, "CLARA_CT", path)
        assert status == 0xC000
        assert not (tmp_path / "escape.dcm").exists() and leftovers(dicom.incoming) == []


async def test_an_aborted_association_leaves_no_job_and_no_files(tmp_path: Path) -> None:
    async with dicom_platform(tmp_path, configuration(free_port())) as dicom:
        statuses = await asyncio.to_thread(abort_after_store, dicom.port, "CLARA_CT", [ct_file(), mr_file()])
        assert statuses == [0, 0]  # stored while the association was open
        rows = await eventually(dicom.associations, what="the aborted association's record")
        assert [(row.outcome, row.instances) for row in rows] == [("aborted", 2)]
        await asyncio.sleep(1)
        assert leftovers(dicom.incoming) == [] and await dicom.dicom_jobs() == []


async def test_a_destination_that_is_down_is_retried_then_failed_and_a_later_export_succeeds(tmp_path: Path) -> None:
    with Orthanc(tmp_path / "orthanc") as pacs:
        pacs.stop()
        async with dicom_platform(tmp_path, configuration(free_port(), pacs.dicom_port)) as dicom:
            assert (await asyncio.to_thread(store, dicom.port, "CLARA_CT", [ct_file()])).returncode == 0
            first = await one_ended_job(dicom, instances=1)
            outcome = await eventually(
                lambda: _metadata(dicom, first.id, "dicom.export.ORTHANC"), what="the failed export recorded"
            )
            assert outcome.startswith("failed after 3 attempts: ORTHANC (ORTHANC at 127.0.0.1:"), outcome
            [export] = await dicom.exports()
            assert (export.state, export.attempts) == ("failed", 3)

            pacs.start()
            assert (await asyncio.to_thread(store, dicom.port, "CLARA_CT", [mr_file()])).returncode == 0

            async def second_sent() -> str | None:
                jobs = [job for job in await dicom.dicom_jobs() if job.id != first.id]
                return (await _metadata(dicom, jobs[0].id, "dicom.export.ORTHANC")) if jobs else None

            assert await eventually(second_sent, what="the second export") == "sent 1 files"
            assert [pacs.instance_tags(i)["StudyInstanceUID"] for i in pacs.instances()] == [study_uid(mr_file())]


async def test_per_study_grouping_makes_one_job_of_a_study_sent_over_two_associations(tmp_path: Path) -> None:
    document = configuration(
        free_port(), processorSettings={"pipeline-derive": "dicom-derive", "grouping": "study", "timeout": 2}
    )
    study = study_uid(ct_file())
    second = make_instances(tmp_path / "more", 2, study_uid=study)
    async with dicom_platform(tmp_path, document) as dicom:
        assert (await asyncio.to_thread(store, dicom.port, "CLARA_CT", [ct_file()])).returncode == 0
        assert (await asyncio.to_thread(store, dicom.port, "CLARA_CT", second, "OTHER_SCU")).returncode == 0
        job = await one_ended_job(dicom, instances=3)
        assert job.metadata["dicom.study_uids"] == study
        assert job.metadata["dicom.calling_ae"] == "OTHER_SCU,STORESCU"
        await asyncio.sleep(2.5)  # no second job comes of it
        assert len(await dicom.dicom_jobs()) == 1


async def test_the_association_limit_and_the_storage_watermark_refuse_associations(tmp_path: Path) -> None:
    document = configuration(free_port())
    document["dicom"]["scp"]["maximumNumberOfAssociations"] = 1
    async with dicom_platform(tmp_path, document) as dicom:
        holder = AE(ae_title="HOLDER")
        holder.add_requested_context(Verification)
        held = await asyncio.to_thread(holder.associate, "127.0.0.1", dicom.port, ae_title="CLARA_CT")
        try:
            assert held.is_established
            busy = await asyncio.to_thread(echo, dicom.port, "CLARA_CT")
            assert busy.returncode != 0 and "Local Limit Exceeded" in busy.stdout + busy.stderr
        finally:
            await asyncio.to_thread(held.release)
        await asyncio.sleep(0.3)
        assert (await asyncio.to_thread(echo, dicom.port, "CLARA_CT")).returncode == 0

        document["dicom"]["scp"]["maximumNumberOfAssociations"] = 5
        document["storage"]["watermarkPercent"] = 0.001  # any volume is fuller than that
        dicom.rewrite(document)

        async def rejected_as_full() -> list[str]:
            refused = await asyncio.to_thread(store, dicom.port, "CLARA_CT", [ct_file()])
            rows = [row.reason for row in await dicom.associations() if row.outcome == "rejected"]
            return rows if refused.returncode != 0 and any("full" in reason for reason in rows) else []

        reasons = await eventually(rejected_as_full, within=10, what="the watermark applied on reload")
        assert "the limit of 1 simultaneous associations is reached" in reasons
        assert any(reason.endswith("% full (watermark 0.001%)") for reason in reasons), reasons


async def test_the_configuration_reloads_and_a_bad_file_keeps_the_last_good_one(tmp_path: Path) -> None:
    document = configuration(free_port())
    async with dicom_platform(tmp_path, document) as dicom:
        assert (await asyncio.to_thread(echo, dicom.port, "CLARA_MR")).returncode != 0
        added = dict(document["dicom"]["scp"]["aeTitles"][0], aeTitle="CLARA_MR")
        document["dicom"]["scp"]["aeTitles"].append(added)
        dicom.rewrite(document)

        async def mr_answers() -> bool:
            return (await asyncio.to_thread(echo, dicom.port, "CLARA_MR")).returncode == 0

        await eventually(mr_answers, within=10, what="the new AE title answering")
        dicom.rewrite("dicom:\n  scp:\n    aeTitles:\n      - aeTitle: THIS_TITLE_IS_FAR_TOO_LONG\n")
        await asyncio.sleep(2.5)  # the watcher has read it
        assert await mr_answers() and (await asyncio.to_thread(echo, dicom.port, "CLARA_CT")).returncode == 0


HOSTILE = """api-version: 0.4.0
name: dicom-hostile
operators:
- name: derive
  container:
    image: busybox
    command: [sh, -c, "cp /input/*.dcm /output/ && ln -s {file} /output/stolen.dcm && ln -s {folder} /output/linked"]
  input: [{{path: /input}}]
  output: [{{path: /output}}]
"""


async def test_an_export_never_follows_links_an_operator_planted(tmp_path: Path) -> None:
    """The operator's outputs hold its copy of the input and links to DICOM files of the host: only the copy
    may reach the PACS."""
    hostile = HOSTILE.format(file=mr_file(), folder=mr_file().parent)
    document = configuration(free_port(), processorSettings={"pipeline-derive": "dicom-hostile"})
    with Orthanc(tmp_path / "orthanc") as pacs:
        document["dicom"]["scu"]["destinations"][0]["port"] = pacs.dicom_port
        async with dicom_platform(tmp_path, document) as dicom:
            await dicom.client.create_pipeline([("hostile.yaml", hostile)])
            assert (await asyncio.to_thread(store, dicom.port, "CLARA_CT", [ct_file()])).returncode == 0
            job = await one_ended_job(dicom, instances=1)
            outcome = await eventually(lambda: _metadata(dicom, job.id, "dicom.export.ORTHANC"), what="the export")
            assert outcome == "sent 1 files"
            sent = [pacs.instance_tags(i)["SOPInstanceUID"] for i in pacs.instances()]
            assert sent == [str(pydicom.dcmread(ct_file()).SOPInstanceUID)]


async def test_released_instances_left_by_a_stop_become_a_job_at_the_next_start(tmp_path: Path) -> None:
    """What a stop left between release and job is grouped again at start; an unreleased folder is removed."""
    data = ct_file().read_bytes()
    instance = inspect(_dataset_bytes(ct_file()), "1.2.840.10008.1.2.1")
    incoming = IncomingStore(tmp_path / "data" / "dicom")
    incoming.write("0123456789abcdef", instance, data)
    incoming.release(
        Released("0123456789abcdef", "CLARA_CT", "BEFORE_STOP", "127.0.0.1", {instance.study: {instance.series: 1}})
    )
    incoming.write("fedcba9876543210", instance, data)  # never released
    (incoming.root / "notes.txt").write_text("an administrator's file in the storage folder")
    async with dicom_platform(tmp_path, configuration(free_port())) as dicom:
        job = await one_ended_job(dicom, instances=1)
        assert job.metadata["dicom.calling_ae"] == "BEFORE_STOP"
        assert leftovers(dicom.incoming) == ["notes.txt"]  # what is not an association's is left alone


async def test_instances_of_an_ignored_sop_class_are_acknowledged_but_not_kept(tmp_path: Path) -> None:
    mr_class = str(pydicom.dcmread(mr_file(), stop_before_pixels=True).SOPClassUID)
    async with dicom_platform(tmp_path, configuration(free_port(), ignoredSopClasses=[mr_class])) as dicom:
        sent = await asyncio.to_thread(store, dicom.port, "CLARA_CT", [ct_file(), mr_file()])
        assert sent.returncode == 0  # the sender is told both were stored
        job = await one_ended_job(dicom, instances=1)
        assert job.metadata["dicom.study_uids"] == study_uid(ct_file())


async def test_a_study_of_many_series_keeps_every_uid_in_the_metadata(tmp_path: Path) -> None:
    """Six series' UIDs do not fit one metadata value (256 bytes): they continue under a second key."""
    study = study_uid(ct_file())
    files = [path for index in range(6) for path in make_instances(tmp_path / f"series{index}", 1, study_uid=study)]
    series = sorted(str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID) for path in files)
    async with dicom_platform(tmp_path, configuration(free_port())) as dicom:
        assert (await asyncio.to_thread(store, dicom.port, "CLARA_CT", files)).returncode == 0
        job = await one_ended_job(dicom, instances=6)
        listed = job.metadata["dicom.series_uids"] + "," + job.metadata["dicom.series_uids.2"]
        assert listed.split(",") == series and "dicom.series_uids.3" not in job.metadata


async def test_an_instance_sent_twice_on_an_association_counts_once(tmp_path: Path) -> None:
    async with dicom_platform(tmp_path, configuration(free_port())) as dicom:
        assert (await asyncio.to_thread(store, dicom.port, "CLARA_CT", [ct_file(), ct_file()])).returncode == 0
        await one_ended_job(dicom, instances=1)
