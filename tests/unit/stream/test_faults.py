"""A fault of the machine or the cluster is not a record's (sysmon_faust.stream.faults)."""

from __future__ import annotations

import orjson
import pytest
import rocksdb
from aiokafka.errors import KafkaTimeoutError, NotEnoughReplicasError

from sysmon_faust.stream.faults import Faults, describe, is_own_fault


@pytest.mark.parametrize(
    "exc",
    [
        rocksdb.errors.RocksIOError(b"IO error: No space left on device"),
        rocksdb.errors.Corruption(b"Corruption: block checksum mismatch"),
        OSError(28, "No space left on device"),
        TimeoutError(),
        ConnectionResetError(),
        MemoryError(),
        KafkaTimeoutError(),
        NotEnoughReplicasError(),
    ],
)
def test_faults_of_the_machine_or_the_cluster_are_our_own(exc: BaseException) -> None:
    assert is_own_fault(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("not a batch"),
        KeyError("process_guid"),
        TypeError("'NoneType' object is not subscriptable"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        orjson.JSONDecodeError("unexpected character", "{x", 1),
    ],
)
def test_what_a_record_can_cause_is_the_records(exc: BaseException) -> None:
    assert not is_own_fault(exc)


def test_a_fault_is_described_in_one_line_and_reported_once_per_part() -> None:
    exc = rocksdb.errors.RocksIOError(b"IO error: No space left on device\nWhile appending")
    assert describe(exc) == "RocksIOError: IO error: No space left on device While appending"
    found = Faults()
    first = found.report("join", exc)
    found.report("join", OSError("later"))
    assert found.current == {"join": first}
    found.clear("join")
    assert found.current == {}
