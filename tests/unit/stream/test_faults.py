"""A fault of the machine or the cluster is not a record's (sysmon_faust.stream.faults)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time

import orjson
import pytest
import rocksdb
from aiokafka.errors import KafkaTimeoutError, NotEnoughReplicasError

from sysmon_faust.stream.faults import (
    EXIT_STATUS,
    Faults,
    describe,
    faults,
    hold_if_stopping,
    is_own_fault,
)


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


#: The child's exit delay and watchdog, s: the same path in 1.5 s rather than 8.
EXIT_AFTER_S, WATCHDOG_S = 0.5, 1.0


def test_a_stopped_worker_exits_even_when_its_event_loop_is_blocked() -> None:
    # CI's full-disk test saw a worker log its stop line and then hang: another
    # part's RocksDB write blocked the loop, so the exit scheduled on it never
    # ran. Here the loop blocks right after the stop, as it did there.
    program = textwrap.dedent(
        f"""
        import asyncio, logging, time
        from sysmon_faust.stream import faults

        # The loop still blocks (at 0.1 s) before the exit is due.
        faults.EXIT_AFTER_SECONDS, faults.EXIT_WATCHDOG_SECONDS = {EXIT_AFTER_S}, {WATCHDOG_S}

        async def main():
            asyncio.ensure_future(faults.stop_worker(
                "join", "t[0]@1", OSError(28, "No space left on device"), logging.getLogger()))
            await asyncio.sleep(0.1)
            a_write_stalled_for_good()

        def a_write_stalled_for_good():
            time.sleep(120)  # on the loop's thread

        asyncio.run(main())
        """
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=60)
    took = time.monotonic() - started
    assert done.returncode == EXIT_STATUS, done.stderr.decode(errors="replace")[-2000:]
    assert took < EXIT_AFTER_S + WATCHDOG_S + 10
    # It says where the loop is stuck, for the next one to hold that write too.
    said = done.stderr.decode(errors="replace")
    assert "the event loop is blocked" in said
    assert "a_write_stalled_for_good" in said


def test_a_stopped_worker_s_parts_hold_before_writing_anything_more() -> None:
    async def scenario() -> tuple[bool, bool]:
        running = asyncio.ensure_future(hold_if_stopping())
        await asyncio.sleep(0)
        went_on = running.done()
        faults.stopping = True
        try:
            held = asyncio.ensure_future(hold_if_stopping())
            await asyncio.sleep(0.05)
            stays = not held.done()
            held.cancel()
        finally:
            faults.stopping = False
        return went_on, stays

    went_on, stays = asyncio.run(scenario())
    assert went_on and stays


def test_a_codec_aiokafka_cannot_read_is_described_with_what_to_install() -> None:
    from aiokafka.errors import UnsupportedCodecError

    line = describe(UnsupportedCodecError("Libraries for zstd compression codec not found"))
    assert line.startswith("UnsupportedCodecError: Libraries for zstd compression codec")
    assert "pip install 'aiokafka[lz4,snappy,zstd]'" in line
    assert is_own_fault(UnsupportedCodecError("x"))
