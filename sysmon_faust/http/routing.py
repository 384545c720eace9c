"""Which worker owns a process GUID, and fetching a table row from it.

A key lives in the table partition the normalizer wrote it to: the
producer's default partitioner (Kafka's murmur2) over the key bytes. The
owner of that partition is in faust's assignment map. Both are read here
directly rather than through ``app.router``, whose partition lookup uses the
producer's cluster metadata — which lacks the changelog topic on a worker
that has not written to it yet (a TypeError inside faust).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import aiohttp
import orjson
from faust.types import TP
from yarl import URL

from sysmon_faust.compat import private
from sysmon_faust.core import activity
from sysmon_faust.core.records import ProcessRow, record_fields
from sysmon_faust.core.rekey import key_partition
from sysmon_faust.stream import recovery_watch
from sysmon_faust.stream.topology import app, pending_table, process_table, settings

#: Set on a request one worker forwards to another, so a stale assignment
#: cannot bounce a request between workers forever.
FORWARDED_HEADER: Final = "X-Sysmon-Forwarded"


_TIMEOUT = aiohttp.ClientTimeout(total=10)


class OwnerUnavailable(Exception):
    """No worker owns the key's partition right now (a rebalance), or it did not answer."""


#: The fields of a table row as the HTTP views show them, in the model's order.
PROCESS_ROW_FIELDS: Final = tuple(record_fields(ProcessRow))


def _as_process_row(stored: dict[str, Any]) -> dict[str, Any]:
    # Every field, in one order: null where the row has none (a process that
    # has not ended has no process_terminated_at yet).
    return {name: stored.get(name) for name in PROCESS_ROW_FIELDS}


def owner_url(key: bytes) -> URL | None:
    """Web address of the worker that owns ``key``'s table partition (None: unassigned)."""
    tp = TP(process_table.changelog_topic.get_topic_name(), key_partition(key, settings.partitions))
    url = private.owner_url(app, tp)
    return URL(url) if url else None


def is_local(url: URL) -> bool:
    me = URL(str(app.conf.canonical_url))
    return (url.host, url.port) == (me.host, me.port)


def forward_headers(token: str | None) -> dict[str, str]:
    headers = {FORWARDED_HEADER: "1"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def fetch_process(guid: str, token: str | None, forwarded: bool = False) -> Any:
    """The ProcessCreate row of ``guid`` as a dict, from whichever worker owns it; None if unknown.

    Raises :class:`OwnerUnavailable` during a rebalance or when the owner does not answer.
    """

    def local(key: bytes) -> Any:
        row = process_table.get(key)
        return None if row is None else _as_process_row(orjson.loads(row))

    return await _fetch_owned(guid, "", local, token, forwarded)


async def fetch_activity(guid: str, token: str | None, forwarded: bool = False) -> Any:
    """What ``guid`` did (:func:`sysmon_faust.core.activity.answer`), from whichever worker
    owns it (its creation counted from its row); None when it has neither a summary nor a row,
    or when no summaries are kept (``SYSMON_ACTIVITY_RECENT=0``).

    Raises :class:`OwnerUnavailable` as :func:`fetch_process` does.
    """

    def local(key: bytes) -> Any:
        if not settings.activity_recent:
            return None  # no summaries kept
        summary = None
        value = pending_table.get(activity.key(guid))
        if value is not None:
            try:
                summary, _ = activity.decode(value)
            except ValueError:
                summary = None
        row = process_table.get(key)
        created_at = None if row is None else orjson.loads(row).get("event_date_creation")
        if summary is None and created_at is None:
            return None
        return activity.answer(guid, summary, settings.activity_recent, created_at)

    return await _fetch_owned(guid, "/activity", local, token, forwarded)


async def _fetch_owned(
    guid: str, suffix: str, local: Callable[[bytes], Any], token: str | None, forwarded: bool
) -> Any:
    """``local(key)`` on the worker that owns ``guid``'s partition: here, or by asking it
    for ``/process/{guid}{suffix}`` (404 → None)."""
    key = guid.encode()
    owner = owner_url(key)
    if owner is None:
        raise OwnerUnavailable("partition not assigned yet (rebalancing)")
    if is_local(owner):
        if not recovery_watch.settled(app):
            # Assigned here, but its rows may still be on their way (from the
            # changelog, or a standby's copy being promoted): "not found" could
            # be wrong (a 404 for a row the table holds, seen after a SIGTERM
            # under load in test_scale_out).
            raise OwnerUnavailable("partition recovering after a rebalance")
        return local(key)
    if forwarded:
        raise OwnerUnavailable("partition is moving between workers")
    url = owner.with_path(f"/process/{guid}{suffix}")
    try:
        async with app.http_client.get(
            url, headers=forward_headers(token), timeout=_TIMEOUT
        ) as response:
            body = await response.read()
            if response.status == 404:
                return None
            if response.status != 200:
                raise OwnerUnavailable(f"owner {owner} answered {response.status}")
            return orjson.loads(body)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise OwnerUnavailable(f"owner {owner} unreachable: {exc}") from exc
