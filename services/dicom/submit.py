"""A closed batch becomes a job of each pipeline its AE title maps: created, its instances placed, started.

Pipelines are looked up in the shared database; Jobs is reached over gRPC (wherever it runs, the
``dicom_platform`` address); the instances go straight
into the job's payload on the shared payload store (moved when one pipeline takes them, copied for the
others), never through an upload stream. Job metadata records where the instances came from.

A batch that cannot be submitted (the platform unreachable, the pipeline missing, its AE title gone from
the configuration) stays on disk and is tried again, with a growing delay; a job made of it that could not
be started is canceled (when the platform answers), and the pipelines whose job was started are not asked
again. The received files go only once every job of the mapping is started: after a crash, the batch is
made into jobs again (at least once, never lost).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from claret.client import PlatformClient
from claret.errors import ClientError
from claret.records import Priority
from services.dicom import tables
from services.dicom.config import AeTitle, DicomConfig
from services.dicom.grouping import Batch
from services.dicom.incoming import IncomingStore
from shared.db import Database, pipelines
from shared.logging import get_logger
from shared.metadata import MAX_VALUE_BYTES
from shared.metrics import Metrics
from shared.payload_store import INPUT_DIR, TEMP_PREFIX, PayloadStore
from shared.platform import cancel_half_made

log = get_logger("claret.dicom.submit")

FIRST_RETRY_S = 2.0
LAST_RETRY_S = 60.0


class Submitter:
    """Turns batches into started jobs, one task per batch."""

    def __init__(
        self,
        config: Callable[[], DicomConfig],
        incoming: IncomingStore,
        payloads: PayloadStore,
        db: Database,
        metrics: Metrics,
        client: Callable[[], PlatformClient],
    ) -> None:
        self._config = config
        self._incoming = incoming
        self._payloads = payloads
        self._db = db
        self._metrics = metrics
        self._client = client
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, batch: Batch) -> None:
        task = asyncio.get_running_loop().create_task(self._submit_until_done(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _submit_until_done(self, batch: Batch) -> None:
        """Submit, trying again while anything fails: the instances stay on disk until every job of the
        mapping is started (a configuration edit that dropped the AE title is a failure too, not a reason
        to throw patient data away)."""
        delay = FIRST_RETRY_S
        while True:
            try:
                files = await asyncio.to_thread(self._files, batch)
                if files:
                    await self._submit(batch, files)
                else:
                    log.error("a batch without instances is dropped", called=batch.called)
                await asyncio.to_thread(self._discard, batch)
                return
            except Exception as exc:  # the platform, the pipeline, the payload, the mapping: worth another try
                log.warning("batch not submitted; will try again", called=batch.called, error=str(exc), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, LAST_RETRY_S)

    async def _submit(self, batch: Batch, files: list[Path]) -> None:
        ae_title = self._config().ae_title(batch.called)
        if ae_title is None:
            raise ClientError(f"AE title {batch.called!r} is no longer configured; its instances wait for it")
        client = self._client()
        for key, ref in ae_title.pipelines:
            if key in batch.jobs_made:
                continue  # made before a later pipeline's job failed: a retry makes only the rest
            pipeline_id = _pipeline_id(ref, await self._db.read(partial(pipelines.ids_for, ref=ref)))
            await self._one_job(client, batch, ae_title, key, pipeline_id, files)
            batch.jobs_made.add(key)

    def _files(self, batch: Batch) -> list[Path]:
        return [path for part in batch.parts for path in self._incoming.files(part.association, part.study)]

    async def _one_job(
        self,
        client: PlatformClient,
        batch: Batch,
        ae_title: AeTitle,
        key: str,
        pipeline_id: str,
        files: list[Path],
    ) -> None:
        name = f"{ae_title.name}-{key}-{time.strftime('%Y%m%d-%H%M%S')}"
        created = await client.create_job(pipeline_id, name, Priority[ae_title.priority.upper()])
        try:
            await asyncio.to_thread(_place, files, self._payloads.path(created.payload_id) / INPUT_DIR)
            await client.add_job_metadata(created.job_id, _metadata(batch))
            job = tables.DicomJob(created.job_id, created.payload_id, batch.called)
            await self._db.write(lambda conn: tables.add_job(conn, job, time.time()))
            await client.start_job(created.job_id)
        except BaseException:
            await cancel_half_made(client, created.job_id, "its DICOM instances could not be placed")
            raise
        self._metrics.dicom_jobs.inc()
        log.info(
            "job created from DICOM",
            job=created.job_id,
            pipeline=pipeline_id,
            called=batch.called,
            instances=batch.instances,
            studies=len(batch.studies),
        )

    def _discard(self, batch: Batch) -> None:
        for part in batch.parts:
            self._incoming.remove(part.association, part.study)


def _pipeline_id(ref: str, ids: list[str]) -> str:
    """A mapping names a pipeline by id or by name (read from the shared database); a name must be unique."""
    if len(ids) != 1:
        kind = "pipelines are" if ids else "pipeline is"
        raise ClientError(f"{len(ids) or 'no'} {kind} named or numbered {ref!r}")
    return ids[0]


def _place(files: list[Path], target: Path) -> None:
    """``<sop uid>.dcm`` files into the payload's input folder, each wholly or not at all: hard-linked
    where the store shares the volume (no copy; the received file goes once every job is started), else
    copied through a temporary."""
    target.mkdir(parents=True, exist_ok=True)
    for source in files:
        temp = target / f"{TEMP_PREFIX}{source.name}"
        try:
            os.link(source, temp)
        except OSError:  # another volume
            shutil.copyfile(source, temp)
            os.chmod(temp, 0o644)
        os.replace(temp, target / source.name)


def _metadata(batch: Batch) -> dict[str, str]:
    series = sorted(uid for study in batch.studies.values() for uid in study)
    return {
        "dicom.called_ae": batch.called,
        **_listed("dicom.calling_ae", sorted(batch.calling)),
        **_listed("dicom.study_uids", sorted(batch.studies)),
        **_listed("dicom.series_uids", series),
        "dicom.instances": str(batch.instances),
    }


def _listed(key: str, values: list[str]) -> dict[str, str]:
    """Comma-separated values under ``key``, continued under ``key.2``, ``key.3``... where one metadata
    value (at most MAX_VALUE_BYTES) cannot hold them all: a study's series UIDs easily exceed it."""
    chunks: list[str] = []
    for value in values:
        if chunks and len(chunks[-1]) + 1 + len(value) <= MAX_VALUE_BYTES:
            chunks[-1] += "," + value
        else:
            chunks.append(value[:MAX_VALUE_BYTES])
    return {key if index == 0 else f"{key}.{index + 1}": chunk for index, chunk in enumerate(chunks)}
