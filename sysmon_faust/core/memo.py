"""A bounded memo of a lookup: what a key was last found (or written) to be, None included.

The join remembers its lookups of RocksDB this way — a process's row
(:meth:`sysmon_faust.core.join.state.JoinState.row`) and a parent link
(:meth:`sysmon_faust.stream.tree_replica.TreeReplica.link`) — because one
python-rocksdb get took 7.7 µs at 200,000 keys (1.3 µs at 1,000) in a
micro-benchmark, and the same few processes and ancestors are looked up by
most events. The owner keeps it true: every write of what it remembers goes
through :meth:`Memo.put` or :meth:`Memo.forget`, and :meth:`Memo.clear` when
something else may have written (a rebalance, a database opened again).

Bounded without bookkeeping per hit: at ``entries`` keys it starts over,
as the Sigma index's memo does (:mod:`sysmon_faust.core.sigma.index`). Pure.
"""

from __future__ import annotations

from typing import Final, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

#: What :meth:`Memo.get` returns for a key not remembered (None is a value).
MISSING: Final = object()


class Memo(Generic[K, V]):
    """At most ``entries`` values by key (``entries`` ≥ 1); when full, the next put starts over."""

    __slots__ = ("_entries", "_values")

    def __init__(self, entries: int) -> None:
        if entries < 1:
            raise ValueError(f"a memo of {entries} entries")
        self._entries = entries
        self._values: dict[K, V] = {}

    def get(self, key: K) -> V | object:
        """The value remembered for ``key`` (None included), or :data:`MISSING`."""
        return self._values.get(key, MISSING)

    def put(self, key: K, value: V) -> None:
        if len(self._values) >= self._entries and key not in self._values:
            self._values.clear()  # bounded; processes come and go
        self._values[key] = value

    def forget(self, key: K) -> None:
        self._values.pop(key, None)

    def clear(self) -> None:
        self._values.clear()

    def __len__(self) -> int:
        return len(self._values)
