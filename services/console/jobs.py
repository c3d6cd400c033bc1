"""The jobs pages: the list (filtered, paged, live) and a job (summary, DAG, operators, logs, files, Cancel),
and payload file downloads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from aiohttp import web

from claret.client import PlatformClient
from claret.records import Job, JobState, JobStatus
from services.console import dag, timeline
from services.console.common import SECURITY_HEADERS, Client, page, platform

PAGE_SIZE = 50
LOG_TAIL_LINES = 200
STOPPED_LOGS_KEPT = 64
"""Stopped jobs whose log tails are remembered (a job page polls every second)."""


class JobPages:
    """Each handler reads what it shows through the platform client and renders a template."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._stopped_logs: dict[str, dict[str, list[str]]] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/jobs", self.jobs),
            web.get("/jobs/rows", self.job_rows),
            web.get("/jobs/{job}", self.job),
            web.get("/jobs/{job}/live", self.job_live),
            web.post("/jobs/{job}/start", self.start),
            web.post("/jobs/{job}/cancel", self.cancel),
            web.get("/payloads/{payload}/{name:.+}", self.download),
        ]

    async def jobs(self, request: web.Request) -> web.StreamResponse:
        return page("jobs.html", request, **await self._job_list(request))

    async def job_rows(self, request: web.Request) -> web.StreamResponse:
        return page("_job_rows.html", request, **await self._job_list(request))

    async def _job_list(self, request: web.Request) -> dict[str, Any]:
        """Jobs newest first, filtered by ``state``, ``status`` and a ``name`` fragment, ``PAGE_SIZE`` a page."""
        query = request.query
        state, status = _member(JobState, query.get("state")), _member(JobStatus, query.get("status"))
        async with platform(self._client) as client:
            jobs = await client.list_jobs(states=[state] if state else (), statuses=[status] if status else ())
        name = query.get("name", "").strip().lower()
        chosen = sorted((j for j in jobs if name in j.name.lower()), key=newest_first)
        page = max(int(query["page"]) if query.get("page", "").isdigit() else 1, 1)
        shown = chosen[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        return {
            "jobs": shown,
            "total": len(chosen),
            "page": page,
            "pages": max((len(chosen) + PAGE_SIZE - 1) // PAGE_SIZE, 1),
            "filters": {"state": state.name if state else "", "status": status.name if status else "", "name": name},
            "states": [s.name for s in JobState if s is not JobState.UNKNOWN],
            "statuses": [s.name for s in JobStatus if s is not JobStatus.UNKNOWN],
            "query": request.query_string,
        }

    async def job(self, request: web.Request) -> web.StreamResponse:
        return page("job.html", request, **await self._job_view(request))

    async def job_live(self, request: web.Request) -> web.StreamResponse:
        return page("_job_live.html", request, **await self._job_view(request))

    async def _job_view(self, request: web.Request) -> dict[str, Any]:
        async with platform(self._client) as client:
            job = await client.job_status(request.match_info["job"])
            files = (await client.payload_details(job.payload_id)).files
            logs = await self._logs(client, job)
        return {
            "job": job,
            "dag": await dag.svg(dag.job_source(job)) if job.dag else "",
            # a stopped job's timeline ends where it stopped, however late the page is looked at
            "timeline": timeline.svg(timeline.dag_order(job.operators, job.dag), job.stopped or datetime.now(UTC)),
            "files": files,
            "logs": logs,
        }

    async def start(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job"]
        async with platform(self._client) as client:
            await client.start_job(job_id)
        raise web.HTTPSeeOther(f"/jobs/{job_id}")

    async def _logs(self, client: PlatformClient, job: Job) -> dict[str, list[str]]:
        """The tail of each operator's log; a stopped job's are read once (they change no more)."""
        if job.id in self._stopped_logs:
            return self._stopped_logs[job.id]
        logs = {op.name: await _tail(client.read_logs(job.id, op.name)) for op in job.operators}
        if job.state is JobState.STOPPED:
            if len(self._stopped_logs) >= STOPPED_LOGS_KEPT:
                self._stopped_logs.pop(next(iter(self._stopped_logs)))
            self._stopped_logs[job.id] = logs
        return logs

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job"]
        async with platform(self._client) as client:
            await client.cancel_job(job_id, "canceled from the console")
        raise web.HTTPSeeOther(f"/jobs/{job_id}")

    async def download(self, request: web.Request) -> web.StreamResponse:
        """A payload file, relayed chunk by chunk as the platform streams it."""
        name = request.match_info["name"]
        response = web.StreamResponse(
            headers={
                **SECURITY_HEADERS,
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="{_safe_filename(name)}"',
            }
        )
        async with platform(self._client) as client:
            chunks = client.download_chunks(request.match_info["payload"], name)
            first = await anext(chunks, b"")  # a refusal (no such file) becomes an error page, not a broken file
            await response.prepare(request)
            await response.write(first)
            async for chunk in chunks:
                await response.write(chunk)
        await response.write_eof()
        return response


async def _tail(lines: AsyncIterator[str]) -> list[str]:
    kept: list[str] = []
    async for line in lines:
        kept.append(line)
        del kept[:-LOG_TAIL_LINES]
    return kept


def _member(kind: type[JobState] | type[JobStatus], name: str | None) -> Any:
    return kind.__members__.get(name or "")


def newest_first(job: Job) -> tuple[float, str]:
    return (-(job.created.timestamp() if job.created else 0.0), job.id)


def _safe_filename(name: str) -> str:
    base = PurePosixPath(name).name
    return "".join(c for c in base if c.isprintable() and c not in '"\\') or "download"
