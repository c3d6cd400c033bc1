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
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath

from aiohttp import web
from aiohttp.typedefs import Middleware

from services.console.common import CSRF_COOKIE, CSRF_TOKEN, SECURITY_HEADERS, Client, JobNames, page
from services.console.gpus import GpuPages
from services.console.jobs import JobPages
from services.console.models import ModelPages
from services.console.pipelines import PipelinePages
from services.console.queue import QueuePages

TOKEN_COOKIE = "claret_token"
MAX_FORM_BYTES = 256 * 1024**2
"""The largest form a browser may post (files for a new job included): a form is read whole, in memory, to
check its CSRF token first; larger inputs go through the CLI or a client, which stream."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(client: Client, tokens: frozenset[str], *, secure_cookies: bool) -> web.Application:
    """The console's routes; ``tokens`` empty means the platform has no authentication and neither has this."""
    app = web.Application(
        middlewares=[_security_headers(), _authenticated(tokens), _csrf(secure_cookies)],
        client_max_size=MAX_FORM_BYTES,
    )
    app.router.add_get("/", _home)
    app.router.add_get("/login", _login_form)
    app.router.add_post("/login", _login(tokens, secure_cookies))
    app.router.add_routes(JobPages(client).routes())
    app.router.add_routes(PipelinePages(client).routes())
    app.router.add_routes(ModelPages(client).routes())
    names = JobNames()  # one cache of job names for the pages that show the queue's jobs
    app.router.add_routes(QueuePages(client, names).routes())
    gpus = GpuPages(client, names)
    app.router.add_routes(gpus.routes())
    app.on_cleanup.append(gpus.on_cleanup)  # the GPU sampling stops with the console
    app.router.add_static("/static", str(PurePosixPath(__file__).parent / "static"))
    return app


async def _home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/jobs")


async def _login_form(request: web.Request) -> web.StreamResponse:
    return page("login.html", request, problem=None)


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
        request[CSRF_TOKEN] = cookie or secrets.token_urlsafe(24)
        response = await handler(request)
        if not cookie and not response.prepared:
            _set_cookie(response, CSRF_COOKIE, request[CSRF_TOKEN], secure, http_only=False)
        return response

    return check


def _login(tokens: frozenset[str], secure: bool) -> Handler:
    async def login(request: web.Request) -> web.StreamResponse:
        token = (await request.post()).get("token", "")
        if not tokens:
            raise web.HTTPSeeOther("/jobs")
        if not isinstance(token, str) or not _accepted(token, tokens):
            response = page("login.html", request, problem="That token is not accepted.")
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
