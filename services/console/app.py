"""The console's pages: server-rendered HTML (Jinja2) over the platform's gRPC API, on aiohttp.

Every page reads through :class:`~claret.client.PlatformClient`, as any other client would: the console
can run beside the platform or on its own (``--services console``) and adds no path into the services that
a client does not have. Parts of a page that change (a job list, a job's DAG, its logs) are fragments the
page fetches again every few seconds (``static/console.js``), so it stays live without a reload.

Security: with bearer tokens on, every page and file wants the ``claret_token`` cookie that the login form
sets (HttpOnly, SameSite=Strict) to hold an accepted token; forms that change something carry a CSRF token
that must equal the browser's ``claret_csrf`` cookie; every response forbids framing and scripts or styles
from anywhere but the console itself. No page shows a token.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import PurePosixPath
from typing import Any

import jinja2
from aiohttp import web
from aiohttp.typedefs import Middleware

from claret.client import PlatformClient
from claret.errors import ClientError
from claret.records import Job, JobState, JobStatus
from services.console import dag
from shared.errors import ErrorCode

TOKEN_COOKIE = "claret_token"
CSRF_COOKIE = "claret_csrf"
MISSING = {ErrorCode.NO_SUCH_JOB, ErrorCode.NO_SUCH_PAYLOAD, ErrorCode.NO_SUCH_FILE, ErrorCode.INVALID_JOB_ID}
"""Refusals that mean "not here": a 404 page, where anything else the platform says is a 502."""
PAGE_SIZE = 50
LOG_TAIL_LINES = 200
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Client = Callable[[], PlatformClient]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

templates = jinja2.Environment(
    loader=jinja2.PackageLoader("services.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def make_app(client: Client, tokens: frozenset[str], *, secure_cookies: bool) -> web.Application:
    """The console's routes; ``tokens`` empty means the platform has no authentication and neither has this."""
    app = web.Application(middlewares=[_security_headers(), _authenticated(tokens), _csrf(secure_cookies)])
    pages = Pages(client)
    app.router.add_get("/", pages.home)
    app.router.add_get("/login", pages.login_form)
    app.router.add_post("/login", _login(tokens, secure_cookies))
    app.router.add_get("/jobs", pages.jobs)
    app.router.add_get("/jobs/rows", pages.job_rows)
    app.router.add_get("/jobs/{job}", pages.job)
    app.router.add_get("/jobs/{job}/live", pages.job_live)
    app.router.add_post("/jobs/{job}/cancel", pages.cancel)
    app.router.add_get("/payloads/{payload}/{name:.+}", pages.download)
    app.router.add_static("/static", str(PurePosixPath(__file__).parent / "static"))
    return app


class Pages:
    """The handlers: each reads what it shows through the platform client and renders a template."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/jobs")

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        return _page("login.html", request, problem=None)

    async def jobs(self, request: web.Request) -> web.StreamResponse:
        return _page("jobs.html", request, **await self._job_list(request))

    async def job_rows(self, request: web.Request) -> web.StreamResponse:
        return _page("_job_rows.html", request, **await self._job_list(request))

    async def _job_list(self, request: web.Request) -> dict[str, Any]:
        """Jobs newest first, filtered by ``state``, ``status`` and a ``name`` fragment, ``PAGE_SIZE`` a page."""
        query = request.query
        state, status = _member(JobState, query.get("state")), _member(JobStatus, query.get("status"))
        async with self._platform() as platform:
            jobs = await platform.list_jobs(states=[state] if state else (), statuses=[status] if status else ())
        name = query.get("name", "").strip().lower()
        chosen = sorted((j for j in jobs if name in j.name.lower()), key=_newest_first)
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
        return _page("job.html", request, **await self._job_view(request))

    async def job_live(self, request: web.Request) -> web.StreamResponse:
        return _page("_job_live.html", request, **await self._job_view(request))

    async def _job_view(self, request: web.Request) -> dict[str, Any]:
        async with self._platform() as platform:
            job = await platform.job_status(request.match_info["job"])
            files = (await platform.payload_details(job.payload_id)).files
            logs = {op.name: await _tail(platform.read_logs(job.id, op.name)) for op in job.operators}
        return {"job": job, "dag": await dag.svg(job) if job.dag else "", "files": files, "logs": logs}

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job"]
        async with self._platform() as platform:
            await platform.cancel_job(job_id, "canceled from the console")
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
        async with self._platform() as platform:
            chunks = platform.download_chunks(request.match_info["payload"], name)
            first = await anext(chunks, b"")  # a refusal (no such file) becomes an error page, not a broken file
            await response.prepare(request)
            await response.write(first)
            async for chunk in chunks:
                await response.write(chunk)
        await response.write_eof()
        return response

    @asynccontextmanager
    async def _platform(self) -> AsyncIterator[PlatformClient]:
        """A client for one request; what the platform refuses becomes an error page saying so."""
        try:
            async with self._client() as platform:
                yield platform
        except ClientError as exc:
            status = web.HTTPNotFound if exc.code in MISSING else web.HTTPBadGateway
            raise status(text=exc.message) from None


def _page(template: str, request: web.Request, **context: Any) -> web.Response:
    context["csrf"] = request.get(CSRF_COOKIE, "")
    body = templates.get_template(template).render(**context)
    return web.Response(text=body, content_type="text/html")


async def _tail(lines: AsyncIterator[str]) -> list[str]:
    kept: list[str] = []
    async for line in lines:
        kept.append(line)
        del kept[:-LOG_TAIL_LINES]
    return kept


def _member(kind: type[JobState] | type[JobStatus], name: str | None) -> Any:
    return kind.__members__.get(name or "")


def _newest_first(job: Job) -> tuple[float, str]:
    return (-(job.created.timestamp() if job.created else 0.0), job.id)


def _safe_filename(name: str) -> str:
    base = PurePosixPath(name).name
    return "".join(c for c in base if c.isprintable() and c not in '"\\') or "download"


# -- middlewares ------------------------------------------------------------------------------------------------


def _security_headers() -> Middleware:
    @web.middleware
    async def add(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(SECURITY_HEADERS)
            raise
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        return response

    return add


def _authenticated(tokens: frozenset[str]) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not tokens or request.path in ("/login",) or request.path.startswith("/static/"):
            return await handler(request)
        if not _accepted(request.cookies.get(TOKEN_COOKIE, ""), tokens):
            if request.method == "GET" and not request.path.endswith(("/rows", "/live")):
                raise web.HTTPFound("/login")
            raise web.HTTPUnauthorized(text="log in with a token first")
        return await handler(request)

    return check


def _csrf(secure: bool) -> Middleware:
    """Double-submit CSRF protection: a random cookie per browser, echoed by every form that posts."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if request.method == "POST":
            sent = (await request.post()).get("csrf", "")
            if not cookie or not isinstance(sent, str) or not hmac.compare_digest(cookie, sent):
                raise web.HTTPForbidden(text="the form's CSRF token is missing or wrong: reload the page")
        request[CSRF_COOKIE] = cookie or secrets.token_urlsafe(24)
        response = await handler(request)
        if not cookie and not response.prepared:
            _set_cookie(response, CSRF_COOKIE, request[CSRF_COOKIE], secure, http_only=False)
        return response

    return check


def _login(tokens: frozenset[str], secure: bool) -> Handler:
    async def login(request: web.Request) -> web.StreamResponse:
        token = (await request.post()).get("token", "")
        if not tokens:
            raise web.HTTPSeeOther("/jobs")
        if not isinstance(token, str) or not _accepted(token, tokens):
            response = _page("login.html", request, problem="That token is not accepted.")
            response.set_status(401)
            return response
        response = web.HTTPSeeOther("/jobs")
        _set_cookie(response, TOKEN_COOKIE, token, secure, http_only=True)
        raise response

    return login


def _accepted(token: str, tokens: frozenset[str]) -> bool:
    return any(hmac.compare_digest(token, accepted) for accepted in tokens) if token else False


def _set_cookie(response: web.StreamResponse, name: str, value: str, secure: bool, *, http_only: bool) -> None:
    response.set_cookie(name, value, httponly=http_only, samesite="Strict", secure=secure, path="/")
