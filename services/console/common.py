"""What every page of the console shares: rendering a template, a platform client for one request, and job
names by id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import jinja2
from aiohttp import web

from claret.client import PlatformClient
from claret.errors import ClientError
from claret.output import duration
from shared.errors import ErrorCode

CSRF_COOKIE = "claret_csrf"
CSRF_TOKEN = web.RequestKey("csrf_token", str)
"""The browser's CSRF token, kept on the request for the pages to put in their forms."""
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
MISSING = {
    ErrorCode.NO_SUCH_JOB,
    ErrorCode.INVALID_JOB_ID,
    ErrorCode.NO_SUCH_PAYLOAD,
    ErrorCode.NO_SUCH_FILE,
    ErrorCode.NO_SUCH_PIPELINE,
    ErrorCode.INVALID_PIPELINE_ID,
}
"""Refusals that mean "not here": a 404 page, where anything else the platform says is a 502."""

SERVICES_JOB = "services"
"""The "job" the scheduling API files pipeline services' grants under (their operator is the service's id)."""
NAMES_KEPT = 4096
"""Job names remembered; the oldest are forgotten (and asked again if shown again)."""

Client = Callable[[], PlatformClient]

templates = jinja2.Environment(
    loader=jinja2.PackageLoader("services.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
templates.filters["duration"] = duration
templates.globals["SERVICES_JOB"] = SERVICES_JOB


def page(template: str, request: web.Request, **context: Any) -> web.Response:
    """A template rendered for ``request`` (with the browser's CSRF token, for the forms it holds)."""
    context["csrf"] = request.get(CSRF_TOKEN, "")
    body = templates.get_template(template).render(**context)
    return web.Response(text=body, content_type="text/html")


@asynccontextmanager
async def platform(client: Client) -> AsyncIterator[PlatformClient]:
    """The console's client of the platform (one channel for every request, not one each); what the
    platform refuses becomes an error page saying so."""
    try:
        yield client()
    except ClientError as exc:
        status = web.HTTPNotFound if exc.code in MISSING else web.HTTPBadGateway
        raise status(text=exc.message) from None


class JobNames:
    """Job names by id for pages that get only ids (the scheduling API's): a job's name never changes, so each
    is asked once (Jobs.Status), and a page's unknown ids all at once, in one round of concurrent calls."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    async def of(self, client: PlatformClient, job_ids: Iterable[str]) -> dict[str, str]:
        """The names of ``job_ids`` the platform knows (a job it does not, or a service's "job", is left out)."""
        wanted = set(job_ids) - {SERVICES_JOB}
        unknown = sorted(wanted - self._names.keys())
        for job_id, name in zip(unknown, await asyncio.gather(*(_name(client, i) for i in unknown)), strict=True):
            if name is not None:
                self._names[job_id] = name
        found = {job_id: self._names[job_id] for job_id in wanted if job_id in self._names}
        while len(self._names) > NAMES_KEPT:
            del self._names[next(iter(self._names))]
        return found


async def _name(client: PlatformClient, job_id: str) -> str | None:
    try:
        return (await client.job_status(job_id)).name
    except ClientError as exc:
        if exc.code in MISSING:
            return None
        raise
