"""HTTP views, served by every worker on Faust's web server.

Errors are JSON with a 4xx status, never a stack trace or an HTML page.
"""

from __future__ import annotations

from typing import Any

from faust import web

from sysmon_faust.stats import stats
from sysmon_faust.topology import app, process_table


def _error(view: web.View, status: int, message: str, **extra: Any) -> web.Response:
    return view.json({"error": message, **extra}, status=status)


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
