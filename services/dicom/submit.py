"""A closed batch becomes a job of each pipeline its AE title maps: created, its instances placed, started.

Pipelines are looked up in the shared database; Jobs is reached over gRPC (wherever it runs, the
``dicom_platform`` address); the instances go straight
into the job's payload on the shared payload store (moved when one pipeline takes them, copied for the
others), never through an upload stream. Job metadata records where the instances came from.

A batch that cannot be submitted (the platform unreachable, the pipeline missing) stays on disk and is
tried again, with a growing delay; a job it had already created is canceled first, so a retry never
leaves a second, half-made job behind.
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
from shared.metrics import Metrics
from shared.payload_store import INPUT_DIR, TEMP_PREFIX, PayloadStore

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
        delay = FIRST_RETRY_S
        while True:
            ae_title = self._config().ae_title(batch.called)
            if ae_title is None:
                log.error("instances dropped: their AE title is no longer configured", called=batch.called)
                self._discard(batch)
                return
            try:
                await self._submit(batch, ae_title)
            except Exception as exc:  # the platform, the pipeline, the payload: all worth another try
                log.warning("batch not submitted; will try again", called=batch.called, error=str(exc), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, LAST_RETRY_S)
                continue
            self._discard(batch)
            return

    async def _submit(self, batch: Batch, ae_title: AeTitle) -> None:
        files = [path for part in batch.parts for path in self._incoming.files(part.association, part.study)]
        async with self._client() as client:
            for index, (key, ref) in enumerate(ae_title.pipelines):
                if key in batch.jobs_made:
                    continue  # made before a later pipeline's job failed: a retry makes only the rest
                pipeline_id = _pipeline_id(ref, await self._db.read(partial(pipelines.ids_for, ref=ref)))
                last = index == len(ae_title.pipelines) - 1
                await self._one_job(client, batch, ae_title, key, pipeline_id, files, move=last)
                batch.jobs_made.add(key)

    async def _one_job(
        self,
        client: PlatformClient,
        batch: Batch,
        ae_title: AeTitle,
        key: str,
        pipeline_id: str,
        files: list[Path],
        *,
        move: bool,
    ) -> None:
        name = f"{ae_title.name}-{key}-{time.strftime('%Y%m%d-%H%M%S')}"
        created = await client.create_job(pipeline_id, name, Priority[ae_title.priority.upper()])
        try:
            await asyncio.to_thread(_place, files, self._payloads.path(created.payload_id) / INPUT_DIR, move)
            await client.add_job_metadata(created.job_id, _metadata(batch))
            job = tables.DicomJob(created.job_id, created.payload_id, batch.called)
            await self._db.write(lambda conn: tables.add_job(conn, job, time.time()))
            await client.start_job(created.job_id)
        except BaseException:
            await _cancel_quietly(client, created.job_id)
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


def _place(files: list[Path], target: Path, move: bool) -> None:
    """``<sop uid>.dcm`` files into the payload's input folder: renamed when ``move`` (the store shares the
    volume), else copied; a file that lands wholly or not at all (a copy goes through a temporary)."""
    target.mkdir(parents=True, exist_ok=True)
    for source in files:
        final = target / source.name
        if move:
            try:
                os.replace(source, final)
                continue
            except OSError:  # another volume: copy
                pass
        temp = target / f"{TEMP_PREFIX}{source.name}"
        shutil.copyfile(source, temp)
        os.chmod(temp, 0o644)
        os.replace(temp, final)


def _metadata(batch: Batch) -> dict[str, str]:
    return {
        "dicom.called_ae": batch.called,
        "dicom.calling_ae": ",".join(sorted(batch.calling)),
        "dicom.study_uids": ",".join(sorted(batch.studies)),
        "dicom.series_uids": ",".join(sorted(s for series in batch.studies.values() for s in series)),
        "dicom.instances": str(batch.instances),
    }


async def _cancel_quietly(client: PlatformClient, job_id: str) -> None:
    try:
        await asyncio.shield(client.cancel_job(job_id, "its DICOM instances could not be placed"))
    except Exception as exc:  # the original failure is the one to report
        log.warning("half-made job not canceled", job=job_id, error=str(exc))
