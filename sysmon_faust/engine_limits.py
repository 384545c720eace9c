"""The join engine's lifetimes and limits, read from the settings: one place for every engine.

The worker (:mod:`sysmon_faust.stream.agents`), ``rules test`` and
``bench/engine.py`` run the same :class:`~sysmon_faust.core.join.engine.JoinEngine`.
Built here from one :class:`~sysmon_faust.settings.Settings`, they run it
with the same caps, TTLs and windows: a recording checked offline makes the
records a worker started with the same ``SYSMON_*`` variables would. Before
this module the offline engine had its own copy of these numbers, equal to
the settings' defaults and deaf to the variables (``SYSMON_DNS_ANSWER_TTL=0``
still named connects in ``rules test``).

What a single file read in order cannot have — several partitions, an
ancestor's link still in flight — :class:`~sysmon_faust.core.join.local.LocalJoin`
sets aside itself (its docstring).
"""

from __future__ import annotations

from sysmon_faust.core.join.engine import Limits
from sysmon_faust.core.join.grace import GraceLimits
from sysmon_faust.core.join.state import Lifetimes
from sysmon_faust.settings import Settings


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def lifetimes(settings: Settings) -> Lifetimes:
    """How long waiting events, rows, DNS answers and activity summaries last (ms, stream time)."""
    return Lifetimes(
        grace=GraceLimits(
            grace_ms=_ms(settings.join_grace),
            max_per_process=settings.pending_per_process,
            max_total=settings.pending_max,
        ),
        retention_ms=_ms(settings.table_retention),
        ttl_ms=_ms(settings.table_ttl),
        dns_ttl_ms=_ms(settings.dns_answer_ttl),
        activity_ttl_ms=_ms(settings.activity_ttl),
    )


def limits(settings: Settings) -> Limits:
    """How the engine behaves: ancestry, alert window, event ids enriched, partitions, caps."""
    return Limits(
        ancestry_depth=settings.ancestry_depth,
        ancestry_wait_ms=_ms(settings.ancestry_wait),
        alert_window_ms=_ms(settings.alert_window),
        parked_per_process=settings.pending_per_process,
        enrich_events=settings.enrich_events,
        partitions=settings.partitions,
        dns_answers_per_process=settings.dns_answers_per_process,
        activity_recent=settings.activity_recent,
    )
