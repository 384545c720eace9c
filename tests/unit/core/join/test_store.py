"""The in-memory store's key walk: in order, lazily, and safe to write during."""

from __future__ import annotations

import random

from sysmon_faust.core.join.store import InMemoryStore


def test_a_walk_sees_what_stays_there_once_in_order_while_keys_come_and_go() -> None:
    # Keys written ahead of the walk may or may not be seen (a RocksDB
    # iterator reads a snapshot; this store walks the live keys): no caller
    # relies on either, so only what stayed put is checked.
    rng = random.Random(3)
    store = InMemoryStore()
    for number in range(0, 400, 2):
        store.put(0, b"k%04d" % number, b"")
    seen = []
    for key in store.keys(0, b"k0100"):
        seen.append(key)
        # Write behind and ahead of the walk, as expiry's callers may.
        store.delete(0, key)
        store.put(0, b"k%04d" % rng.randrange(0, 100), b"")  # behind: not seen
        if len(seen) == 10:
            store.delete(0, b"k0300")  # ahead: deleted before it was reached
            store.put(0, b"k0301", b"")  # ahead: added before it was reached
    stayed = [b"k%04d" % n for n in range(100, 400, 2) if n != 300]
    assert [key for key in seen if key not in (b"k0300", b"k0301")] == stayed
    assert seen == sorted(set(seen))
    assert list(store.keys(1)) == []
