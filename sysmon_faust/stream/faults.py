"""Whose fault it is: the record's, or the machine's and the cluster's.

Dead letters are for what is wrong with a *record*: bytes that are not an
event, a Sysmon event without the fields a join needs. What is wrong with
the *machine or the cluster* — an I/O error from RocksDB, a full disk, a
broker refusing a write after its retries, a lost transaction — is no
record's fault, and handled as one it did harm: with the state directory on
a 40 MB filesystem, 282,188 valid events went to the dead-letter topic while
the worker kept consuming, counted table rows it had not stored, and
``/health`` said nothing (issue 15).

So the hot path sorts every exception it catches with :func:`is_own_fault`.
A fault of our own stops processing at the record it happened on: no dead
letter, no offset committed past it (the record is not acknowledged), one
log line, ``/health`` 503 with the reason (:data:`faults`), and then the
worker exits with :data:`EXIT_STATUS` so that its supervisor (systemd,
Kubernetes, Compose's ``restart:``) starts it again — on its state and its
committed offsets, as after any crash. Not a retry in place: RocksDB stays
read-only after a failed write until it is opened again (tried: a put after
space was freed still failed), and under exactly_once the record's partial
output sits in an open transaction that only a new producer can abort.
"""

from __future__ import annotations

import asyncio
import faulthandler
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import confluent_kafka
import rocksdb
from aiokafka.errors import KafkaError, UnsupportedCodecError
from faust.exceptions import ProducerSendError

#: Exceptions of the machine or the cluster, never of a record: the OS
#: (OSError: disks, sockets, TimeoutError), memory, Kafka clients after
#: their retries, RocksDB (python-rocksdb's errors: IO, corruption, ...).
OWN_FAULTS: Final[tuple[type[BaseException], ...]] = (
    OSError,
    MemoryError,
    KafkaError,
    confluent_kafka.KafkaException,
    ProducerSendError,
    rocksdb.errors.Error,
)

#: Exit status of a worker stopped by a fault of its own: sysexits.h's
#: EX_TEMPFAIL, "try again later".
EXIT_STATUS: Final = 75
#: Seconds between the fault and the exit: ``/health`` answers 503 with the
#: reason meanwhile, for whoever watches it.
EXIT_AFTER_SECONDS: Final = 3.0
#: Seconds after that the worker exits even if its event loop is blocked.
EXIT_WATCHDOG_SECONDS: Final = 5.0


def is_own_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is the machine's or the cluster's fault rather than the record's."""
    return isinstance(exc, OWN_FAULTS)


def describe(exc: BaseException) -> str:
    """One line: the exception's type and message (RocksDB's come as bytes), and what to do."""
    message = exc.args[0] if len(exc.args) == 1 else str(exc)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    elif isinstance(message, confluent_kafka.KafkaError):
        # librdkafka's error as the binding words it, or as a subclass that
        # says what to do does (input_consumer.StaticMemberFenced).
        message = str(exc)
    text = f"{type(exc).__name__}: {message}".strip().replace("\n", " ")
    if isinstance(exc, UnsupportedCodecError):
        # aiokafka names the codec ("Libraries for zstd compression codec not
        # found", "Unknown compression codec 0x05"); the caller names the topic.
        text += (
            " — the topic holds record batches compressed with a codec this worker cannot "
            "read: install aiokafka's codec libraries (pip install 'aiokafka[lz4,snappy,zstd]'), "
            "or for a codec aiokafka does not know, a newer aiokafka"
        )
    return text


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault of our own a part of the worker stopped on: which part, why, since (Unix s)."""

    component: str
    reason: str
    since: float


class Faults:
    """The faults of our own the worker is stopped on now, by component (``join``, ``intake``)."""

    def __init__(self) -> None:
        self.current: dict[str, Fault] = {}
        #: The worker is on its way out (stop_worker).
        self.stopping = False
        self._stopping: asyncio.Task[None] | None = None
        self._watchers: dict[tuple[str, logging.Logger], Callable[[Any], None]] = {}

    def report(self, component: str, exc: BaseException) -> Fault:
        fault = Fault(component, describe(exc), time.time())
        self.current.setdefault(component, fault)
        return fault

    def clear(self, component: str) -> None:
        self.current.pop(component, None)

    def watch_send(self, component: str, sent: Any, log: logging.Logger) -> None:
        """Stop the worker if the send ``sent`` (an asyncio future, or a
        :class:`~sysmon_faust.stream.output_producer.Delivery`) fails after its retries.

        Its record is lost otherwise: Faust flushes the producer before a
        commit, but does not ask whether what it flushed arrived. The
        commit guard (``faust_fixes``, 10.) commits nothing once a fault is
        reported, so no offset passes the record the send came from.
        """
        watcher = self._watchers.get((component, log))
        if watcher is None:
            # One callback per component, not a closure per record (the join
            # watches every record it makes).
            watcher = self._watchers[component, log] = functools.partial(self._sent, component, log)
        sent.add_done_callback(watcher)

    def _sent(self, component: str, log: logging.Logger, done: Any) -> None:
        if done.cancelled() or done.exception() is None or self._stopping is not None:
            return
        exc = done.exception()
        # Reported here, not in the task: a commit waiting on the flush this
        # send belongs to runs before the task starts, and must see it.
        self.report(component, exc)
        self._stopping = asyncio.ensure_future(stop_worker(component, "a send", exc, log))


#: This worker's.
faults = Faults()


async def stop_worker(
    component: str, where: str, exc: BaseException, log: logging.Logger
) -> NoReturn:
    """Stop the worker on a fault of our own (see the module docstring); never returns.

    ``where``: the record it happened on (topic[partition]@offset). The
    caller holds what must not move on meanwhile (the join its record, not
    acknowledged; the intake its batch, not committed).
    """
    fault = faults.report(component, exc)
    if faults.stopping:
        # Another part stopped the worker already (a full disk fails them
        # all at once): one line, one exit.
        await asyncio.Event().wait()
    faults.stopping = True
    log.critical(
        "sysmon-faust: %s stopped at %s by a fault of the machine or the cluster, not of the "
        "record: %s — no dead letter, no offset committed past it; exiting with status %d "
        "so the worker is started again (it goes on from its state and committed offsets)",
        component, where, fault.reason, EXIT_STATUS,
    )  # fmt: skip
    # The exit must not need the event loop: with the disk full, another
    # part's RocksDB write may block the loop for good (a write stalled on a
    # memtable that cannot be flushed) — a worker that logged this line and
    # then hung was seen in CI's full-disk test. A thread exits regardless,
    # without the log handlers' locks (the blocked thread may hold one; the
    # line above is out already: a StreamHandler flushes every record).
    watchdog = threading.Timer(EXIT_AFTER_SECONDS + EXIT_WATCHDOG_SECONDS, _exit_blocked)
    watchdog.daemon = True
    watchdog.start()
    try:
        await asyncio.sleep(EXIT_AFTER_SECONDS)
    finally:
        # Also when cancelled (a SIGTERM meanwhile): not a clean Faust
        # shutdown, which would commit, and under exactly_once commit the
        # record's partial output in the partition's transaction.
        _exit_now()


async def hold_if_stopping() -> None:
    """Never return once a fault stops the worker; return at once otherwise.

    The worker's parts call it before each write to their RocksDB: on a full
    disk a write may block the event loop for good (a memtable that cannot
    be flushed), and then nothing answers ``/health`` with the reason for
    the seconds before the exit. A stopped worker writes nothing more — its
    records are not acknowledged, a restart replays them.
    """
    if faults.stopping:
        await asyncio.Event().wait()


def _exit_blocked() -> NoReturn:
    # The event loop did not get to the exit: say where it is stuck (every
    # thread's stack, written straight to stderr, no lock taken), so the
    # write that blocked it can be found and held like the others.
    os.write(2, b"sysmon-faust: the event loop is blocked; exiting from the watchdog. Stacks:\n")
    faulthandler.dump_traceback(all_threads=True)
    os._exit(EXIT_STATUS)


def _exit_now() -> NoReturn:
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_STATUS)
