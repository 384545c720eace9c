"""A librdkafka client that knows no broker any more: a fault of the cluster, not a wait.

While a broker shuts down (controlled shutdown: a restart, an upgrade) it
may answer a metadata request with no broker at all — the only broker, or
the whole cluster, going away. librdkafka (since 2.10) then drops every
broker it knew, and may never connect again: it asks for its partitions'
leaders with no broker to ask, and its records wait until
``message.timeout.ms`` fails them (confluentinc/librdkafka#5301). Seen in
``tests/integration/test_crash_recovery.py``'s broker restart with
confluent-kafka 2.12.2 (the intake's producer and consumer) and 2.16.1
(the join's producer); ``metadata.recovery.rebootstrap.trigger.ms`` did not
bring them back either (docs/testing.md). A worker on such a client
would wait for good, so it stops as on any fault of the cluster
(:mod:`sysmon_faust.stream.faults`: ``/health`` 503 with the reason, exit 75),
and its supervisor starts it again with new clients, on its state and its
committed offsets: nothing is lost.

The client says which brokers it knows in its statistics (librdkafka's
STATISTICS.md: ``brokers``, each with its ``source``: ``configured`` for
``bootstrap.servers``, ``learned`` from metadata); a broker that is down
is still known. :class:`BrokerWatch` reads them every
:data:`STATS_INTERVAL_MS` and reports a client that has known none for
:data:`LOST_AFTER_SECONDS`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

import orjson

#: How often (ms) each librdkafka client hands its statistics to the watch
#: (``statistics.interval.ms``).
STATS_INTERVAL_MS: Final = 5_000
#: Seconds a client may know no broker before the worker stops. librdkafka
#: found a broker again by itself within 22 s at most in the runs where it
#: did (confluent-kafka 2.16.1, docs/testing.md).
LOST_AFTER_SECONDS: Final = 30.0
#: Brokers a client can connect to: from ``bootstrap.servers`` or from metadata
#: (not its internal broker, nor the consumer group's logical coordinator).
_CONNECTABLE: Final = frozenset({"configured", "learned"})


class BrokerWatch:
    """librdkafka's ``stats_cb`` for every client of the worker: which clients (by librdkafka's
    name, ``<client.id>#producer-3``) have named no broker they can connect to in their
    statistics for ``lost_after_s`` seconds or more (:meth:`lost`).

    Called by librdkafka from whichever thread polls the client (the event
    loop's, or a transaction's thread): it only takes notes, under a lock;
    the worker looks at them (``watch_kafka_clients``, sysmon_faust.http.observability).
    ``clock``: seconds, monotonic.
    """

    def __init__(
        self, lost_after_s: float = LOST_AFTER_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lost_after_s = lost_after_s
        self._clock = clock
        self._lock = threading.Lock()
        #: Per client: since when (clock s) it has known no broker.
        self._without_since: dict[str, float] = {}

    def __call__(self, stats_json: str) -> None:
        stats = orjson.loads(stats_json)
        client = str(stats.get("name", "?"))
        brokers = stats.get("brokers") or {}
        knows_one = any(broker.get("source") in _CONNECTABLE for broker in brokers.values())
        now = self._clock()
        with self._lock:
            if knows_one:
                self._without_since.pop(client, None)
            else:
                self._without_since.setdefault(client, now)

    def lost(self) -> list[tuple[str, float]]:
        """``(client, seconds without a broker)`` of each client past ``lost_after_s``."""
        now = self._clock()
        with self._lock:
            return [
                (client, now - since)
                for client, since in self._without_since.items()
                if now - since >= self._lost_after_s
            ]
