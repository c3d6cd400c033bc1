"""Results back to DICOM: when a job made of received instances ends, its DICOM outputs go to the
destinations its AE title's ``export`` names, each with retries and a growing delay.

Two loops on the event loop. The watcher asks the platform, every ``poll`` seconds, how the jobs it still
waits for are doing; a job that ended HEALTHY with DICOM files in the named operators' outputs gets one
pending export per destination (in the table, so a restart carries on). The sender tries each export
when due: sent, or failed and tried again after ``retryDelaySeconds`` doubled per attempt, until
``maximumRetries`` retries failed. Every attempt is written to the export's row (``claret dicom exports``),
the final outcome also to the job's metadata (``dicom.export.<destination>``: ``claret describe job``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator

from claret.client import PlatformClient
from claret.errors import ClientError
from claret.records import JobState, JobStatus
from services.dicom import tables
from services.dicom.config import DicomConfig
from services.dicom.scu import ExportError, find_results, send
from shared.db import Database
from shared.errors import ClaretError, ErrorCode
from shared.logging import get_logger
from shared.metadata import MAX_VALUE_BYTES
from shared.metrics import Metrics
from shared.payload_store import PayloadStore

log = get_logger("claret.dicom.export")

IDLE_WAKE_S = 5.0
"""The sender looks at the table at least this often (another replica may have added exports)."""


class Exporter:
    def __init__(
        self,
        config: Callable[[], DicomConfig],
        payloads: PayloadStore,
        db: Database,
        metrics: Metrics,
        client: Callable[[], PlatformClient],
        *,
        poll: float = 0.5,
    ) -> None:
        self._config = config
        self._payloads = payloads
        self._db = db
        self._metrics = metrics
        self._client = client
        self._poll = poll
        self._due = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._watch()), loop.create_task(self._send_when_due())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # Jobs ending

    async def _watch(self) -> None:
        while True:
            with _logged("watching jobs"):
                running = await self._db.read(tables.running_jobs)
                client = self._client()
                for job in running:
                    with _logged(f"checking job {job.job_id}"):  # one job's trouble holds up no other
                        await self._check(client, job)
            await asyncio.sleep(self._poll)

    async def _check(self, client: PlatformClient, job: tables.DicomJob) -> None:
        try:
            status = await client.job_status(job.job_id)
        except ClientError as exc:
            if exc.code != ErrorCode.NO_SUCH_JOB:
                raise
            log.warning("a DICOM job is gone; nothing to export", job=job.job_id)
            await self._db.write(lambda conn: tables.end_job(conn, job.job_id, {}, time.time()))
            return
        if status.state is not JobState.STOPPED:
            return
        try:
            counts = await asyncio.to_thread(self._results, job, status.status)
        except ClaretError as exc:  # its payload is gone: nothing to send, ever
            log.warning("a DICOM job's results cannot be read; nothing to export", job=job.job_id, error=str(exc))
            counts = {}
        await self._db.write(lambda conn: tables.end_job(conn, job.job_id, counts, time.time()))
        if counts:
            self._due.set()
        log.info("DICOM job ended", job=job.job_id, status=status.status.name, exports=sorted(counts))

    def _results(self, job: tables.DicomJob, status: JobStatus) -> dict[str, int]:
        """Files to send by destination: none unless the job ended HEALTHY and its AE title exports."""
        ae_title = self._config().ae_title(job.called)
        if status is not JobStatus.HEALTHY or ae_title is None or ae_title.export is None:
            return {}
        files = find_results(self._payloads.path(job.payload_id), ae_title.export.operators)
        return {name: len(files) for name in ae_title.export.destinations} if files else {}

    # Exports

    async def _send_when_due(self) -> None:
        while True:
            with _logged("sending exports"):
                due = await self._db.read(lambda conn: tables.due_exports(conn, time.time()))
                limit = asyncio.Semaphore(self._config().scu_max_associations)
                attempts = await asyncio.gather(*(self._attempt(e, limit) for e in due), return_exceptions=True)
                for failure in (a for a in attempts if isinstance(a, BaseException)):
                    log.warning("an export attempt was not recorded", error=f"{type(failure).__name__}: {failure}")
            self._due.clear()
            next_try = await self._db.read(tables.next_export_due)
            wait = IDLE_WAKE_S if next_try is None else min(IDLE_WAKE_S, max(0.0, next_try - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), wait)

    async def _attempt(self, export: tables.ExportRow, limit: asyncio.Semaphore) -> None:
        config = self._config()
        async with limit:
            error = await asyncio.to_thread(self._send, config, export)
        attempts = export.attempts + 1
        now = time.time()
        if error is None:
            settled = dataclasses.replace(export, state="sent", attempts=attempts, error="", updated=now)
            outcome, note = "sent", f"sent {export.files} files"
        elif attempts > config.max_retries:
            settled = dataclasses.replace(export, state="failed", attempts=attempts, error=error, updated=now)
            outcome, note = "failed", f"failed after {attempts} attempts: {error}"
        else:
            delay = config.retry_delay * 2 ** (attempts - 1)
            settled = dataclasses.replace(export, attempts=attempts, error=error, next_try=now + delay, updated=now)
            outcome, note = "retried", ""
        await self._db.write(lambda conn: tables.settle_attempt(conn, settled))
        self._metrics.dicom_exports.labels(outcome).inc()
        log.info("DICOM export", job=export.job_id, destination=export.destination, outcome=outcome, error=error)
        if settled.state != "pending":  # metadata keys are written once: the outcome, not each attempt
            with _logged("recording an export on its job"):
                note = note[:MAX_VALUE_BYTES]
                await self._client().add_job_metadata(export.job_id, {_key(export.destination): note})

    def _send(self, config: DicomConfig, export: tables.ExportRow) -> str | None:
        """One attempt, on a worker thread: None when every file was stored, else why not."""
        destination = config.destination(export.destination)
        if destination is None:
            return f"destination {export.destination!r} is no longer configured"
        ae_title = config.ae_title(export.called)
        operators = ae_title.export.operators if ae_title is not None and ae_title.export is not None else ()
        try:
            files = find_results(self._payloads.path(export.payload_id), operators)
            if not files:
                return "the job's DICOM results are gone (payload deleted, or the mapping changed)"
            send(destination, config.scu_ae_title, files)
        except ExportError as exc:
            return str(exc)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None


def _key(destination: str) -> str:
    return f"dicom.export.{destination}"


@contextlib.contextmanager
def _logged(doing: str) -> Iterator[None]:
    """A failed round is logged and the loop goes on (the platform may be restarting)."""
    try:
        yield
    except Exception as exc:
        log.warning(f"failed {doing}", error=f"{type(exc).__name__}: {exc}")
