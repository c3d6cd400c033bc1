"""What every page of the console shares: rendering a template, and a platform client for one request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import jinja2
from aiohttp import web

from claret.client import PlatformClient
from claret.errors import ClientError
from shared.errors import ErrorCode

CSRF_COOKIE = "claret_csrf"
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

Client = Callable[[], PlatformClient]

templates = jinja2.Environment(
    loader=jinja2.PackageLoader("services.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def page(template: str, request: web.Request, **context: Any) -> web.Response:
    """A template rendered for ``request`` (with the browser's CSRF token, for the forms it holds)."""
    context["csrf"] = request.get(CSRF_COOKIE, "")
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
