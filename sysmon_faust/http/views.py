"""HTTP views, served by every worker on Faust's web server.

Any worker answers for any process: a lookup is fetched from the worker that
owns the key's partition (:mod:`sysmon_faust.http.routing`). Errors are JSON with a
4xx/5xx status, never a stack trace or an HTML page — also those aiohttp
gives before any view or middleware runs (a request its HTTP parser refuses:
a request line or header over 8190 bytes, more than 128 headers, an unknown
method, bytes that are not HTTP). With
``SYSMON_HTTP_TOKEN`` set, every endpoint but ``/health`` wants
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web as aiohttp_web
from faust import web

from sysmon_faust.compat import web_patches
from sysmon_faust.core import ancestry
from sysmon_faust.core.normalize import canonical_guid
from sysmon_faust.core.stats import stats
from sysmon_faust.http import routing
from sysmon_faust.http.observability import health_state, render_metrics, worker_state
from sysmon_faust.stream.topology import app, settings
from sysmon_faust.stream.topology import tree_replica as tree_copy

log = logging.getLogger(__name__)

#: Paths anyone may call, token or not: orchestrators probe health unauthenticated.
PUBLIC_PATHS = frozenset({"/health"})


def _json_error(status: int, message: str, **extra: Any) -> aiohttp_web.Response:
    return aiohttp_web.json_response({"error": message, **extra}, status=status)


@aiohttp_web.middleware
async def json_errors(request: aiohttp_web.Request, handler: Any) -> aiohttp_web.StreamResponse:
    """aiohttp's own errors (unknown path, wrong method...) as JSON; never a stack trace."""
    try:
        response: aiohttp_web.StreamResponse = await handler(request)
    except aiohttp_web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _json_error(exc.status, exc.reason, path=request.path[:200])
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path[:200])
        return _json_error(500, "internal error")
    return response


@aiohttp_web.middleware
async def bearer_token(request: aiohttp_web.Request, handler: Any) -> aiohttp_web.StreamResponse:
    token = settings.http_token
    if token and request.path not in PUBLIC_PATHS:
        offered = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if not hmac.compare_digest(offered.encode(), expected.encode()):
            return _json_error(401, "missing or wrong bearer token (SYSMON_HTTP_TOKEN)")
    response: aiohttp_web.StreamResponse = await handler(request)
    return response


# Outermost first: errors raised by the token check are JSON too.
app.web.web_app.middlewares.extend([json_errors, bearer_token])  # type: ignore[attr-defined]


# aiohttp's own error answers (a request its parser refuses) as JSON too.
web_patches.install_json_request_errors()


def _error(view: web.View, status: int, message: str, **extra: Any) -> web.Response:
    return view.json({"error": message, **extra}, status=status)


#: What ``GET /`` lists: every endpoint of the worker, and what it answers.
ENDPOINTS = (
    ("GET /health", "200 when the worker runs and keeps up, 503 with the reasons when not"),
    ("GET /stats", "this worker's counters and the partitions it holds"),
    ("GET /metrics", "the counters and gauges in Prometheus' text format"),
    ("GET /process/{guid}", "the ProcessCreate row of a process, from whichever worker owns it"),
    ("GET /process/{guid}/ancestry", "its ancestors, from the walk every alert's ancestry uses"),
    ("GET /process/{guid}/activity", "what it did: events by Sysmon id, the latest of each kind"),
)


async def _index(self: web.View, request: web.Request) -> web.Response:
    return self.json(
        {
            "service": "sysmon-faust worker",
            "endpoints": [{"endpoint": path, "answers": text} for path, text in ENDPOINTS],
            "token": "every endpoint but /health wants 'Authorization: Bearer <token>'"
            if settings.http_token
            else "none needed (SYSMON_HTTP_TOKEN is not set)",
        }
    )


# Faust serves its own "dummy index" at / ({"status": "OK"}); a user who opens
# the worker's address sees what there is to ask instead.
web_patches.replace_faust_index(_index)


@app.page("/health")
class Health(web.View):
    async def get(self, request: web.Request) -> web.Response:
        state = health_state()
        return self.json(state, status=200 if state["healthy"] else 503)


@app.page("/stats")
class Stats(web.View):
    async def get(self, request: web.Request) -> web.Response:
        return self.json({**stats.as_dict(), **worker_state()})


@app.page("/metrics")
class Metrics(web.View):
    async def get(self, request: web.Request) -> web.Response:
        return self.text(render_metrics(), content_type="text/plain; version=0.0.4")


async def _answer_for_process(
    view: web.View, request: web.Request, guid: str,
    lookup: Callable[[str, bool], Awaitable[Any]], not_found: str = "process not found",
) -> web.Response:  # fmt: skip
    """400 for a non-GUID, 503 while the owner is unavailable, 404 when unknown, else 200.

    ``lookup(canonical GUID, forwarded)``: the answer, from the key's owner
    (``forwarded``: another worker asked this one, which must not ask on).
    """
    try:
        canonical = canonical_guid(guid, "guid")
    except ValueError:
        canonical = None
    if canonical is None:
        return _error(view, 400, "not a process GUID", value=guid[:100])
    forwarded = bool(request.headers.get(routing.FORWARDED_HEADER))
    try:
        answer = await lookup(canonical, forwarded)
    except routing.OwnerUnavailable as exc:
        return _error(view, 503, f"{exc}; retry shortly", process_guid=canonical)
    if answer is None:
        return _error(view, 404, not_found, process_guid=canonical)
    return view.json(answer)


# aiohttp's default segment pattern refuses braces, which GUIDs usually carry.
@app.page("/process/{guid:[^/]+}")
class ProcessLookup(web.View):
    """The ProcessCreate row of a process, from whichever worker owns it."""

    async def get(self, request: web.Request, guid: str) -> web.Response:
        return await _answer_for_process(self, request, guid, _fetch_process)


async def _fetch_process(guid: str, forwarded: bool) -> Any:
    return await routing.fetch_process(guid, settings.http_token, forwarded)


@app.page("/process/{guid:[^/]+}/ancestry")
class ProcessAncestry(web.View):
    """A process's ancestors, from the walk every alert's ancestry comes from (ancestry.py)."""

    async def get(self, request: web.Request, guid: str) -> web.Response:
        async def lookup(canonical: str, forwarded: bool) -> Any:
            if not tree_copy.caught_up.is_set():
                raise routing.OwnerUnavailable("this worker's process-tree copy is still loading")
            row = await _fetch_process(canonical, forwarded)
            # Every worker's copy holds every link: the walk is local.
            return None if row is None else ancestry.answer(row, tree_copy.link)

        return await _answer_for_process(self, request, guid, lookup)


@app.page("/process/{guid:[^/]+}/activity")
class ProcessActivity(web.View):
    """What a process did: its bounded summary (sysmon_faust.core.activity), from its owner."""

    async def get(self, request: web.Request, guid: str) -> web.Response:
        return await _answer_for_process(
            self, request, guid, _fetch_activity, "no activity recorded for this process"
        )


async def _fetch_activity(guid: str, forwarded: bool) -> Any:
    return await routing.fetch_activity(guid, settings.http_token, forwarded)
