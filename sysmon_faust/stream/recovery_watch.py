"""The tables' changelog recovery as it goes: sampled, logged, kept for /health and /metrics.

The figures are :class:`sysmon_faust.core.recovery_progress.RecoveryProgress`'s, made of
Faust's count of what each actively recovered changelog partition has left
(``Recovery.active_remaining_total``). Samples come once a second (the
timer in :mod:`sysmon_faust.http.observability`), at each edge of Faust's
recovery (:func:`sysmon_faust.compat.private.on_recovery_edges`: a recovery
shorter than a second is seen too), from the bulk restore as it starts and
ends (:mod:`sysmon_faust.stream.bulk_restore`), and with every ``/health``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from sysmon_faust.compat import private
from sysmon_faust.core.recovery_progress import RecoveryProgress

log = logging.getLogger(__name__)

#: The current recovery, or the last.
progress = RecoveryProgress()
#: Seconds between two progress lines in the log while the worker recovers.
LOG_EVERY_S: Final = 5.0
_logged_at = 0.0


def sample(recovery: Any, now: float) -> None:
    """One sample of Faust's ``Recovery`` at ``now`` (monotonic s); a log line every
    :data:`LOG_EVERY_S` while it recovers, and one when it is done."""
    global _logged_at
    remaining = recovery.active_remaining_total() if recovery.in_recovery else 0
    # Faust marks every rebalance as a recovery; one with nothing to read is none.
    if remaining > 0 or (recovery.in_recovery and progress.recovering):
        progress.observe(remaining, now)
        if now - _logged_at >= LOG_EVERY_S:
            _logged_at = now
            log.info(progress.log_line())
    elif progress.recovering:
        progress.finish(now)
        log.info(
            "tables recovered: %s changelog records in %.1f s",
            f"{progress.records_total:,}",
            now - (progress.started_at or now),
        )


def settled(app: Any) -> bool:
    """Whether the tables of ``app`` (a Faust app) hold, in every partition assigned here,
    what their changelogs do: no rebalance under way, and Faust's ``Recovery`` of the
    tables done (``completed`` set, ``in_recovery`` false). Right after an assignment a
    partition's rows are still being read from its changelog or a standby's copy."""
    recovery = app.tables.recovery
    return not app.rebalancing and recovery.completed.is_set() and not recovery.in_recovery


def _at_an_edge(recovery: Any) -> None:
    # Runs inside Faust's recovery: an exception here would leave its end
    # never signalled (the recovery loop swallows it and waits on).
    try:
        sample(recovery, time.monotonic())
    except Exception:
        log.exception("recovery progress: a sample failed (the recovery goes on)")


private.on_recovery_edges(_at_an_edge, _at_an_edge)
