"""HTTP views, served by every worker on Faust's web server.

Errors are JSON with a 4xx status, never a stack trace or an HTML page.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web as aiohttp_web
from aiokafka.partitioner import murmur2
from faust import web
from faust.types import TP
from yarl import URL

from sysmon_faust.normalize import canonical_guid
from sysmon_faust.stats import stats
from sysmon_faust.topology import app, process_table, settings

log = logging.getLogger(__name__)

#: Set on a request one worker forwards to another, so a stale assignment
#: cannot bounce a request between workers forever.
FORWARDED_HEADER = "X-Sysmon-Forwarded"


def _error(view: web.View, status: int, message: str, **extra: Any) -> web.Response:
    return view.json({"error": message, **extra}, status=status)


@aiohttp_web.middleware
async def json_errors(request: aiohttp_web.Request, handler: Any) -> aiohttp_web.StreamResponse:
    """aiohttp's own errors (unknown path, wrong method...) as JSON; never a stack trace."""
    try:
        response: aiohttp_web.StreamResponse = await handler(request)
    except aiohttp_web.HTTPException as exc:
        if exc.status < 400:
            raise
        return aiohttp_web.json_response(
            {"error": exc.reason, "path": request.path[:200]}, status=exc.status
        )
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path[:200])
        return aiohttp_web.json_response({"error": "internal error"}, status=500)
    return response


app.web.web_app.middlewares.append(json_errors)  # type: ignore[attr-defined]


def health_state() -> dict[str, Any]:
    """Is this worker recovered and processing? Each condition is reported by name."""
    recovery = app.tables.recovery  # type: ignore[attr-defined]  # on the TableManager, not its ABC
    assignment = app.consumer.assignment() if app.consumer is not None else set()
    checks = {
        "started": bool(app.started),
        "partitions_assigned": _assigned_once,
        "rebalancing": bool(app.rebalancing),
        "recovering": bool(recovery.in_recovery) or not recovery.completed.is_set(),
    }
    healthy = (
        checks["started"]
        and checks["partitions_assigned"]
        and not checks["rebalancing"]
        and not checks["recovering"]
    )
    return {
        "status": "ok" if healthy else "starting",
        "healthy": healthy,
        "assigned_partitions": len(assignment),
        **checks,
    }


_assigned_once = False


@app.on_partitions_assigned.connect
async def _on_assigned(app: Any, /, *_: Any, signal: Any, **__: Any) -> None:
    global _assigned_once
    _assigned_once = True


@app.page("/health")
class Health(web.View):
    async def get(self, request: web.Request) -> web.Response:
        state = health_state()
        return self.json(state, status=200 if state["healthy"] else 503)


@app.page("/stats")
class Stats(web.View):
    async def get(self, request: web.Request) -> web.Response:
        return self.json({**stats.as_dict(), "table_rows": _local_table_rows()})


def _local_table_rows() -> int:
    """Rows of the process table in the partitions this worker owns (actives)."""
    try:
        return len(process_table)
    except Exception:
        return 0


def key_partition(key: bytes) -> int:
    # The producer's default partitioner (Kafka's murmur2): the partition the
    # normalizer wrote this key to, hence the table partition that holds it.
    # Computed here rather than through the producer's cluster metadata, which
    # lacks the changelog topic on a worker that has not written to it yet.
    return (murmur2(key) & 0x7FFFFFFF) % settings.partitions


def owner_url(key: bytes) -> URL | None:
    """Web address of the worker that owns ``key``'s table partition (None: unassigned)."""
    tp = TP(process_table.changelog_topic.get_topic_name(), key_partition(key))
    url = app.assignor._tps_url.get(tp)  # type: ignore[attr-defined]  # faust's own routing map
    return URL(url) if url else None


async def _forward(view: web.View, request: web.Request, owner: URL) -> web.Response:
    target = request.url.with_host(owner.host or "127.0.0.1").with_port(owner.port)
    headers = {FORWARDED_HEADER: "1"}
    async with app.http_client.get(target, headers=headers) as response:
        return view.bytes(
            await response.read(), content_type="application/json", status=response.status
        )


# aiohttp's default segment pattern refuses braces, which GUIDs usually carry.
@app.page("/process/{guid:[^/]+}")
class ProcessLookup(web.View):
    """The ProcessCreate row of a process, from whichever worker owns it."""

    async def get(self, request: web.Request, guid: str) -> web.Response:
        try:
            canonical = canonical_guid(guid, "guid")
        except ValueError:
            return _error(self, 400, "not a process GUID", value=guid[:100])
        if canonical is None:  # the zero GUID: never a process
            return _error(self, 404, "process not found", process_guid=guid[:100])
        key = canonical.encode()
        owner = owner_url(key)
        if owner is None:
            return _error(self, 503, "partition not assigned yet (rebalancing); retry")
        if not _is_me(owner):
            if request.headers.get(FORWARDED_HEADER):
                return _error(self, 503, "partition is moving between workers; retry")
            return await _forward(self, request, owner)
        row = process_table.get(key)
        if row is None:
            return _error(self, 404, "process not found", process_guid=canonical)
        return self.json(row.to_representation())


def _is_me(url: URL) -> bool:
    me = URL(str(app.conf.canonical_url))
    return (url.host, url.port) == (me.host, me.port)
