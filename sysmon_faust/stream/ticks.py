"""Ticks: a record now and then on every re-keying partition this worker joins.

Waiting connects, rows and alert groups expire (close) when their partition's stream time passes
their deadline, and stream time moves on with the wall clock
(:mod:`sysmon_faust.core.join.expiry`). But Faust lets a table change only while an
agent handles a record of the table's partition, so a partition that
receives nothing needs a record to expire in: every few seconds each worker
sends a tick (``{"_event_id": 0}``) to the re-keying partitions it actively
owns; the join agent handles it by running expiry. The join also sends one
to a partition whose parked joins may be released (sysmon_faust.core.join.parking).
"""

from __future__ import annotations

import logging

from sysmon_faust.core.rekey import EVENT_ID_FIELD, TICK
from sysmon_faust.stream.topology import app, settings

log = logging.getLogger(__name__)

TICK_RECORD = b'[{"%s": %d}]' % (EVENT_ID_FIELD.encode(), TICK)
#: A quarter of the shortest lifetime, between 1 and 10 seconds.
TICK_INTERVAL_SECONDS = max(
    1.0,
    min(
        [
            10.0,
            *(
                s / 4
                for s in (settings.join_grace, settings.table_retention, settings.alert_window)
                if s
            ),
        ]
    ),
)


async def send_tick(partition: int) -> None:
    """One tick to a re-keying partition; a failure is logged (the next tick tries again)."""
    try:
        await app.producer.send(settings.topic_by_guid, None, TICK_RECORD, partition, None, None)
    except Exception as exc:
        log.warning("tick to %s[%s] failed: %r", settings.topic_by_guid, partition, exc)


async def tick_owned_partitions() -> None:
    owned = sorted(
        tp.partition for tp in app.assignor.assigned_actives() if tp.topic == settings.topic_by_guid
    )
    for partition in owned:
        await send_tick(partition)


app.timer(interval=TICK_INTERVAL_SECONDS)(tick_owned_partitions)
