"""The changelog writes the join sends after a record: one per key, the last."""

from __future__ import annotations

from typing import Any

from sysmon_faust.stream.store import RocksDBTable


class _Database:
    """python-rocksdb's ``DB.put``/``delete`` (``sync``, ``disable_wal``), in a dict."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        #: Writes that went through the write-ahead log.
        self.logged = 0

    def put(self, key: bytes, value: bytes, sync: bool = False, disable_wal: bool = False) -> None:
        self.data[key] = value
        self.logged += not disable_wal

    def delete(self, key: bytes, sync: bool = False, disable_wal: bool = False) -> None:
        self.data.pop(key, None)
        self.logged += not disable_wal


def _table() -> tuple[RocksDBTable, dict[int, _Database]]:
    table = RocksDBTable(table=None)  # type: ignore[arg-type]
    databases: dict[int, _Database] = {0: _Database(), 1: _Database()}
    table._db = lambda partition: databases[partition]  # type: ignore[method-assign]
    return table, databases


def _replay(changes: list[Any]) -> dict[tuple[int, bytes], bytes]:
    state: dict[tuple[int, bytes], bytes] = {}
    for partition, key, value in changes:
        if value is None:
            state.pop((partition, key), None)
        else:
            state[(partition, key)] = value
    return state


def test_a_key_written_several_times_in_a_record_is_sent_once_with_its_last_value() -> None:
    table, databases = _table()
    writes = [(0, b"g", b"1"), (0, b"r", b"x"), (0, b"g", b"2"), (1, b"g", b"9"),
              (0, b"r", None), (0, b"g", b"3"), (1, b"t", b"t"), (1, b"t", None)]  # fmt: skip
    for partition, key, value in writes:
        if value is None:
            table.delete(partition, key)
        else:
            table.put(partition, key, value)
    sent = table.take_unsent()
    assert sorted((p, k) for p, k, _ in sent) == [(0, b"g"), (0, b"r"), (1, b"g"), (1, b"t")]
    # read back as a changelog is (last value wins): what all the writes would give
    assert _replay(sent) == _replay(writes)
    assert _replay(sent) == {(p, k): v for p, db in databases.items() for k, v in db.data.items()}
    assert table.take_unsent() == []
    # The changelog makes them durable, not RocksDB's write-ahead log (stream/store.py).
    assert all(db.logged == 0 for db in databases.values())
