"""Wall-clock time in the one format the contract uses: ISO 8601 UTC, milliseconds, ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def utc_now_iso() -> str:
    return iso_utc(datetime.now(UTC))


def record_timestamp_ms(event_time_ms: int, now_ms: int) -> int:
    """The Kafka timestamp of a record made from an event: its event time, if Kafka takes it.

    An endpoint's clock can be off by hours or years. Kafka refuses a record
    stamped more than ``message.timestamp.after.max.ms`` (1 h by default)
    ahead of the broker's clock, or before 1970 — and a refused record stops
    its whole batch, replayed and refused again at every restart. So the
    record's timestamp is held to [1970, now]; the event keeps its own time
    in its fields.
    """
    return min(max(event_time_ms, 0), now_ms)
