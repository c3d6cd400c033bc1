"""Job lifecycle: Create, Start, Cancel, Status, List, ReadLogs and metadata, over the database.

Running what was started is the executor's business; this module checks requests, records them and
hands started jobs over.
"""

from __future__ import annotations

import asyncio
import dataclasses
import unicodedata
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

from services.jobs import job_table, logs
from services.jobs.model import (
    RUNNING_JOBS,
    JobFilter,
    JobRecord,
    JobState,
    JobStatus,
    JobView,
    OperatorRecord,
    OperatorStatus,
    Priority,
)
from services.jobs.runtimes.base import SERVICES_JOB
from services.jobs.topology import Topology
from shared import ids
from shared import metadata as metadata_rules
from shared.db import Database
from shared.db import models as model_table
from shared.db import payloads as payloads_table
from shared.db import pipelines as pipelines_table
from shared.db.connection import Connection
from shared.db.metadata import MetadataRows
from shared.db.payloads import PayloadRecord, PayloadType
from shared.errors import ClaretError, ErrorCode
from shared.payload_store import PayloadStore
from shared.pipeline_definition import Pipeline, load_pipeline_cached

MAX_NAME_CHARS = 255


def check_job_name(name: str) -> str:
    """1-255 printable characters (the official client's own tests name a job 'test job', with a space)."""
    if not name.strip():
        raise ClaretError(ErrorCode.INVALID_JOB_NAME, "job name must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise ClaretError(
            ErrorCode.INVALID_JOB_NAME, f"job name is {len(name)} characters long; at most {MAX_NAME_CHARS} are allowed"
        )
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise ClaretError(ErrorCode.INVALID_JOB_NAME, f"job name {name!r} contains control characters")
    return name


class JobManager:
    """The Jobs RPCs over the database; started jobs go to the topology's executor."""

    def __init__(self, db: Database, store: PayloadStore, topology: Topology) -> None:
        self._db = db
        self._store = store
        self._topology = topology
        self._executor = topology.executor
        self._metadata = MetadataRows(
            db, "jobs", lambda job_id: ClaretError(ErrorCode.NO_SUCH_JOB, f"no job with id {job_id!r}")
        )

    async def create(
        self, pipeline_id: str, name: str, priority: int, input_payloads: Sequence[str], metadata: Mapping[str, str]
    ) -> JobRecord:
        """A job of the pipeline's current definition, with a new payload holding the inputs' copies."""
        key = ids.parse_id(pipeline_id, ErrorCode.INVALID_PIPELINE_ID, "pipeline")
        pipeline = await self._db.read_fast(lambda conn: pipelines_table.get(conn, key))
        if pipeline is None:
            raise ClaretError(ErrorCode.NO_SUCH_PIPELINE, f"no pipeline with id {pipeline_id!r}")
        now = ids.now()
        job = JobRecord(
            id=ids.new_id(),
            pipeline_id=key,
            payload_id=ids.new_id(),
            name=check_job_name(name),
            priority=Priority.of(priority),
            state=JobState.PENDING,
            status=JobStatus.HEALTHY,
            files=pipeline.files,
            created=now,
            metadata=metadata_rules.validate(metadata),
        )
        model = load_pipeline_cached(pipeline.files)
        operators = [
            OperatorRecord(
                job_id=job.id, name=op.name, status=OperatorStatus.PENDING, upstream=op.upstream, created=now
            )
            for op in model.operators
        ]
        sources = [await self._reusable(payload_id) for payload_id in input_payloads]
        payload = PayloadRecord(
            id=job.payload_id, type=PayloadType.PIPELINE, job_id=job.id, read_only=False, metadata={}, created=now
        )
        self._store.create(payload.id)
        try:
            for source in sources:
                await asyncio.to_thread(self._store.copy_into, source.id, payload.id)

            def record(conn: Connection) -> None:
                payloads_table.insert(conn, payload)
                job_table.insert(conn, job, operators)

            await self._db.write(record)
        except BaseException:
            self._store.delete(payload.id)
            raise
        return job

    async def _reusable(self, payload_id: str) -> PayloadRecord:
        key = ids.parse_id(payload_id, ErrorCode.INVALID_PAYLOAD_ID, "input payload")
        record = await self._db.read_fast(lambda conn: payloads_table.get(conn, key))
        if record is None:
            raise ClaretError(ErrorCode.NO_SUCH_PAYLOAD, f"no payload with id {payload_id!r}")
        if record.type is not PayloadType.REUSABLE:
            raise ClaretError(
                ErrorCode.INVALID_PAYLOAD_ID,
                f"input payload {payload_id!r} belongs to job {record.job_id}; only reusable "
                "payloads can be a job's input",
            )
        return record

    async def get(self, job_id: str) -> JobRecord:
        key = ids.parse_id(job_id, ErrorCode.INVALID_JOB_ID, "job")
        job = await self._db.read_fast(lambda conn: job_table.get(conn, key))
        if job is None:
            raise ClaretError(ErrorCode.NO_SUCH_JOB, f"no job with id {job_id!r}")
        return job

    async def start(self, job_id: str, variables: Mapping[str, str]) -> JobRecord:
        """Resolve templates with ``variables``, check every operator can ever fit, then queue the job."""
        job = await self.get(job_id)
        if job.queued is not None or job.stopped is not None:
            raise ClaretError(ErrorCode.JOB_WRONG_STATE, f"job {job.id} was already started")
        model = self._executor.load(job, dict(variables))
        misfits = [
            f"operator {op.name!r} {reason}"
            for op in model.operators
            if (reason := self._executor.queue.lacks(await self._executor.waits_for(op)))
        ]
        if misfits:
            raise ClaretError(ErrorCode.JOB_CANNOT_FIT, *misfits)
        await self._check_models(model)
        queued = ids.now()

        def mark(conn: Connection) -> bool:
            if not job_table.mark_queued(
                conn, job.id, dict(variables), model.timeout, queued, self._executor.settings.replica
            ):
                return False
            payloads_table.set_read_only(conn, job.payload_id)
            return True

        if not await self._db.write(mark):
            raise ClaretError(ErrorCode.JOB_WRONG_STATE, f"job {job.id} was already started")
        job = dataclasses.replace(job, queued=queued, variables=dict(variables), timeout=model.timeout)
        # Shielded: a client that leaves mid-Start must not leave a started job half queued.
        await asyncio.shield(self._executor.admit(job, model))
        return job

    async def _check_models(self, model: Pipeline) -> None:
        """Every model an operator lists is in the Model Repository (by name), or Start is refused naming
        each one missing; and a Triton is there to serve them."""
        wanted = {name: op.name for op in model.operators for name in op.models}
        if not wanted:
            return
        known = {m.name for m in await self._db.read(model_table.all_models)}
        missing = [
            f"operator {op!r} needs model {name!r}, which is not in the model repository"
            for name, op in wanted.items()
            if name not in known
        ]
        if missing:
            raise ClaretError(ErrorCode.NO_SUCH_MODEL, *missing)
        if self._executor.services.triton is None:
            users = ", ".join(sorted({repr(op) for op in wanted.values()}))
            raise ClaretError(
                ErrorCode.TRITON_UNAVAILABLE,
                f"operator(s) {users} list models, and no Triton serves them "
                f"(CLARET_TRITON_HOME on the sandbox runtime, CLARET_TRITON_IMAGE on Docker)",
            )

    async def cancel(self, job_id: str, reason: str) -> JobRecord:
        """Cancel a waiting or running job, wherever it runs; a stopped job is answered as it is."""
        job = await self.get(job_id)
        if job.stopped is None:
            await self._topology.cancel(job, f"canceled: {reason}" if reason else "canceled")
        return await self.get(job.id)

    async def status(self, job_id: str) -> JobView:
        """The job and its operators, read in place: Status is polled, often."""
        key = ids.parse_id(job_id, ErrorCode.INVALID_JOB_ID, "job")
        view = await self._db.read_fast(lambda conn: job_table.view(conn, key))
        if view is None:
            raise ClaretError(ErrorCode.NO_SUCH_JOB, f"no job with id {job_id!r}")
        return view

    async def find(self, where: JobFilter) -> list[JobRecord]:
        """Jobs.List: the jobs matching ``where``; no filter at all means the running jobs (the API's rule)."""
        chosen = RUNNING_JOBS if where.is_empty() else where
        return await self._db.read(lambda conn: job_table.list_jobs(conn, chosen))

    async def read_logs(self, job_id: str, operator_name: str) -> AsyncIterator[list[str]]:
        """The operator's log lines (stdout and stderr as they were written), in batches; what exists now.
        Job id ``services`` reads the log of the latest pipeline service of that name (Claret's addition)."""
        if job_id == SERVICES_JOB:
            path = self._executor.services.newest_log(operator_name.strip())
            if path is None:
                raise ClaretError(ErrorCode.NO_SUCH_OPERATOR, f"no pipeline service named {operator_name!r} ran here")
            return logs.batches(path)
        view = await self.status(job_id)
        wanted = operator_name.strip().casefold()
        match = next((op.name for op in view.operators if op.name.casefold() == wanted), None)
        if match is None:
            raise ClaretError(
                ErrorCode.NO_SUCH_OPERATOR,
                f"job {view.job.id} has no operator named {operator_name!r}; it has "
                f"{', '.join(op.name for op in view.operators)}",
            )
        return logs.batches(self._executor.log_path(view.job.id, match))

    async def add_metadata(self, job_id: str, new: Mapping[str, str]) -> dict[str, str]:
        return await self._metadata.add(ids.parse_id(job_id, ErrorCode.INVALID_JOB_ID, "job"), new)

    async def remove_metadata(self, job_id: str, keys: Iterable[str]) -> dict[str, str]:
        return await self._metadata.remove(ids.parse_id(job_id, ErrorCode.INVALID_JOB_ID, "job"), keys)
