"""The pipelines pages: the list, and a pipeline (its definition highlighted, its DAG, its jobs, and a form
that creates a job from uploaded files and starts it)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import YamlLexer

from claret.client import PlatformClient
from claret.errors import ClientError
from claret.records import Job, Priority
from services.console import dag
from services.console.common import Client, page, platform
from services.console.jobs import newest_first
from shared.errors import ErrorCode
from shared.platform import cancel_half_made

REFUSED_INPUT = {ErrorCode.INVALID_JOB_NAME, ErrorCode.INVALID_FILE_NAME, ErrorCode.AMBIGUOUS_NAME}
"""What the platform refuses in what the form sent: shown on the form again, as a 400, not a 502."""
PRIORITIES = [p.name for p in Priority if p is not Priority.UNKNOWN]


class PipelinePages:
    """Each handler reads what it shows through the platform client and renders a template."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/pipelines", self.pipelines),
            web.get("/pipelines/{pipeline}", self.pipeline),
            web.get("/pipelines/{pipeline}/rows", self.job_rows),
            web.post("/pipelines/{pipeline}/jobs", self.create_job),
        ]

    async def pipelines(self, request: web.Request) -> web.StreamResponse:
        async with platform(self._client) as client:
            listed = await client.list_pipelines()
        return page("pipelines.html", request, pipelines=sorted(listed, key=lambda p: (p.name.lower(), p.id)))

    async def pipeline(self, request: web.Request) -> web.StreamResponse:
        return page("pipeline.html", request, **await self._pipeline_view(request, problem=None, chosen={}))

    async def job_rows(self, request: web.Request) -> web.StreamResponse:
        pipeline_id = request.match_info["pipeline"]
        async with platform(self._client) as client:
            jobs = await _jobs(client, pipeline_id)
        return page("_job_rows.html", request, jobs=jobs)

    async def _pipeline_view(self, request: web.Request, problem: str | None, chosen: dict[str, str]) -> dict[str, Any]:
        pipeline_id = request.match_info["pipeline"]
        async with platform(self._client) as client:
            pipeline = await client.pipeline_details(pipeline_id)
            jobs = await _jobs(client, pipeline.id)
        nodes = dag.pipeline_nodes(pipeline.dag)
        return {
            "pipeline": pipeline,
            "definitions": [(file.path, _highlighted(file.content)) for file in pipeline.files],
            "dag": await dag.svg(dag.dot_source(nodes)) if nodes else "",
            "operators": [node.name for node in nodes],
            "jobs": jobs,
            "priorities": PRIORITIES,
            "problem": problem,
            "chosen": {"name": "", "priority": Priority.NORMAL.name, **chosen},
        }

    async def create_job(self, request: web.Request) -> web.StreamResponse:
        """Create a job of the pipeline, upload each file sent (as its base name) into its payload, start it,
        and show it. What the platform refuses (a job or file name) is said on the form again, and the job
        left half made is canceled."""
        pipeline_id = request.match_info["pipeline"]
        form = await request.post()  # parsed (and cached by aiohttp) already by the CSRF check
        name = _text(form, "name").strip()
        chosen_priority = _text(form, "priority")
        priority = Priority.__members__[chosen_priority] if chosen_priority in PRIORITIES else Priority.NORMAL
        chosen = {"name": name, "priority": priority.name}
        files = [field for field in form.getall("files", []) if isinstance(field, web.FileField) and field.filename]
        job_id = ""
        try:
            async with platform(self._client) as client:
                try:
                    created = await client.create_job(pipeline_id, name, priority)
                    job_id = created.job_id
                    for file in files:
                        await client.upload(created.payload_id, _base_name(file.filename), file.file.read())
                    await client.start_job(job_id)
                except ClientError as exc:
                    if exc.code not in REFUSED_INPUT:
                        raise
                    if job_id:
                        await cancel_half_made(client, job_id, "its files were refused when created from the console")
                    response = page("pipeline.html", request, **await self._refused(request, exc, chosen))
                    response.set_status(400)
                    return response
        finally:
            for file in files:
                file.file.close()
        raise web.HTTPSeeOther(f"/jobs/{job_id}")

    async def _refused(self, request: web.Request, exc: ClientError, chosen: dict[str, str]) -> dict[str, Any]:
        return await self._pipeline_view(request, problem=f"The platform refused the job: {exc.message}", chosen=chosen)


async def _jobs(client: PlatformClient, pipeline_id: str) -> list[Job]:
    return sorted(await client.list_jobs(pipeline_ids=[pipeline_id]), key=newest_first)


def _highlighted(content: str) -> str:
    """A definition file (YAML) as HTML, highlighted by Pygments with classes only: the CSP allows no inline
    style, and the rules for the classes are in console.css."""
    return str(highlight(content, YamlLexer(), HtmlFormatter(nowrap=False, cssclass="highlight")))


def _text(form: MultiDictProxy[Any], key: str) -> str:
    value = form.get(key, "")
    return value if isinstance(value, str) else ""


def _base_name(filename: str) -> str:
    """The file's own name, whatever folders the browser put before it (some send a whole Windows path)."""
    return PurePosixPath(filename.replace("\\", "/")).name
