"""Keep the internal re-keying topic small: delete what the join has consumed.

``<app_id>-events-by-process-guid`` has no time retention (its records carry
old event times, see :mod:`sysmon_faust.stream.topology`). Once the consumer group
has committed past a record, no worker needs it again — the table's
changelog, not this topic, is what recovery reads — so the leader deletes
everything below the committed offsets, as Kafka Streams does for its
repartition topics.
"""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from sysmon_faust.stream.topology import app, settings

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 60.0


@app.timer(interval=PURGE_INTERVAL_SECONDS, on_leader=True)
async def purge_consumed_events() -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, **settings.kafka_client_options()
    )
    try:
        await admin.start()
        committed = await admin.list_consumer_group_offsets(settings.app_id)
        deletable = {
            tp: RecordsToDelete(before_offset=meta.offset)
            for tp, meta in committed.items()
            if tp.topic == settings.topic_by_guid and meta.offset > 0
        }
        if deletable:
            await admin.delete_records(deletable, timeout_ms=30_000)
    except Exception as exc:
        log.warning("purge of %s failed, will retry: %r", settings.topic_by_guid, exc)
    finally:
        await admin.close()
