"""The join engine: every decision the join makes, event by event, over its state — no I/O.

The worker's join agent (:mod:`sysmon_faust.stream.agents`) decodes a record,
hands each event to :meth:`JoinEngine.handle`, lets the engine run what falls
due (:meth:`JoinEngine.after_record`), and sends the :class:`Output` it gets
back; ``rules test`` (:mod:`sysmon_faust.cli.rules_test`) runs the same engine
over an in-memory store, and unit tests drive it event by event with no
broker (``tests/unit/core/join/test_engine.py``).

What the join means, as in HELK's ``SYSMON_JOIN`` (a ksqlDB stream-table
INNER join), and what it adds (the decision ladder of :meth:`handle`):

* a ProcessCreate becomes the process's row (and releases the connects
  that waited for it, in event-time order); a ProcessTerminate marks the
  row, which stays a retention longer;
* a NetworkConnect without a process identity (the zero GUID) is unmatched
  at once (``no_process_guid``);
* one whose process has a row joins with it — with the ancestry known then,
  or parked while an ancestor's link may still come (:mod:`parking`);
* one whose process is unknown is unmatched at once without a grace
  (``process_unknown``, ksqlDB's behaviour), or when its process's start
  time says the creation cannot come any more (``process_started_before_grace``);
  else it waits in the grace buffer (:mod:`grace`) — unless the buffer is
  full for it (``pending_overflow``) — and leaves it joined, or unmatched
  once the grace is over (``process_unknown_after_grace``);
* every joined connect is checked against the rules; a match alerts at once
  or counts into its group (:mod:`sysmon_faust.core.alert_groups`);
* every event of an enriched id (``Limits.enrich_events``: connects, creations,
  terminations and the other ids alike) is written to ``sysmon-enriched``
  once, with its process and ancestry, by the same ladder: at once when the
  row is there, after waiting in the grace buffer, or without its process
  and with the reason (the connects' reasons). Connects are written with the
  ``sysmon-join`` record and its ancestry (after parking); other events with
  the ancestry known when they join (they are not parked). Sysmon 8 and 10
  name a second process, the target: its row is added from the target's
  own partition (:meth:`JoinEngine._target_side`).

Stream time orders every deadline (:mod:`expiry`). Pure: I/O is the caller's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

import orjson

from sysmon_faust.core import activity, alert_groups, dns_answers, guid_time
from sysmon_faust.core.ancestry import Walk
from sysmon_faust.core.clock import utc_now_iso
from sysmon_faust.core.join import grace, parking
from sysmon_faust.core.join.semantics import (
    NO_PROCESS_GUID,
    PROCESS_UNKNOWN,
    Row,
    enrich,
    enrich_event,
    with_target,
)
from sysmon_faust.core.join.semantics import unmatched as unmatched_record
from sysmon_faust.core.join.state import JoinState
from sysmon_faust.core.normalize import (
    NETWORK_CONNECT,
    PROCESS_CREATE,
    PROCESS_TERMINATE,
    TWO_PROCESS_EVENT_IDS,
)
from sysmon_faust.core.rekey import (
    EVENT_ID_FIELD,
    EVENT_TIME_FIELD,
    RECEIVED_FIELD,
    TARGET_LOOKUP,
    TICK,
    key_partition,
)
from sysmon_faust.core.sigma import fields as sigma_fields
from sysmon_faust.core.sigma.alerts import alert_record
from sysmon_faust.core.sigma.fields import EVENT_DATA
from sysmon_faust.core.sigma.logsource import SYSMON_EVENT_IDS
from sysmon_faust.core.sigma.ruleset import RuleSet, SigmaRule
from sysmon_faust.core.stats import PipelineStats

log = logging.getLogger(__name__)

#: Where an :class:`Output` goes: sysmon-join, sysmon-network-unmatched, sysmon-alerts,
#: sysmon-enriched.
JOINED: Final = "joined"
UNMATCHED: Final = "unmatched"
ALERTS: Final = "alerts"
ENRICHED: Final = "enriched"
#: The re-keying topic itself, in the partition an Output names: a Sysmon 8/10
#: record on its way to its target's side.
REKEYED: Final = "rekeyed"

#: Stream time that is later than every deadline: the end of a recording.
END_OF_TIME: Final = 2**62

#: Sysmon 22: a process's query and its answers (schema 4.90: QueryName, QueryResults).
DNS_QUERY: Final = 22

#: Marks an event (kept while it waits for its process) whose rules on the
#: event alone already ran when it arrived: when it joins, only the rules
#: that use process context are left. Never in a written record.
_ARRIVAL_RULES_DONE: Final = "_arrival_rules_done"


# Not frozen (as shapes.Envelope): one per record the join makes, and nothing changes it.
@dataclass(slots=True)
class Output:
    """A record the join makes: where it goes, its key, its fields, its event time (s).

    ``written``: False for what the worker does not write — the final state
    of an alert group of one match, which ``rules test`` shows all the same.
    """

    topic: str
    key: bytes | None
    row: Row
    timestamp: float
    written: bool = True
    #: The partition to write to; None: the key's (Kafka's default partitioner).
    partition: int | None = None


class Tree(Protocol):
    """The process tree as the join reads it (:mod:`sysmon_faust.core.ancestry`)."""

    #: Grows whenever a link is read: parked joins are looked at again then.
    version: int

    def walk(self, row: Row, depth: int) -> Walk: ...

    def may_come(self, guid: str, start_ms: int | None) -> bool:
        """Whether the missing link of ``guid`` may still be written (so: wait for it)."""
        ...


@dataclass(frozen=True)
class Limits:
    """How the engine behaves (the worker's settings; milliseconds unless said)."""

    ancestry_depth: int = 4
    #: How long a join may be parked for an ancestor's link; 0: never parks.
    ancestry_wait_ms: int = 5_000
    #: Alert groups' window (stream time); 0: every match alerts.
    alert_window_ms: int = 600_000
    #: Sysmon event ids written to sysmon-enriched with their process (SYSMON_ENRICH_EVENTS).
    enrich_events: frozenset[int] = frozenset()
    #: Partitions of the re-keying topic (SYSMON_PARTITIONS): where a target's row lives.
    partitions: int = 1
    #: DNS answers kept per process (SYSMON_DNS_ANSWERS_PER_PROCESS).
    dns_answers_per_process: int = 256
    #: Events of each kind a process's activity summary lists (SYSMON_ACTIVITY_RECENT);
    #: 0: no summaries.
    activity_recent: int = 5
    #: Parked joins per process (SYSMON_PENDING_PER_PROCESS) and per engine.
    parked_per_process: int = 1_000
    #: Each look at a partition's parked joins walks each parked process once:
    #: at most this many walks (~7 µs each). Past it, a join whose ancestor may
    #: still come is emitted with the ancestry known, and a process with parked
    #: joins has them released first (counted): a flood costs ancestry, never memory.
    parked_at_most: int = 10_000
    #: Entries expired per record at most, so a partition whose stream time
    #: jumps (a long-idle partition, a replay) does not hold the agent for
    #: long; the rest go with the next records.
    expire_at_most: int = 2_000


@dataclass
class JoinEngine:
    """The join of the partitions one worker (or one ``rules test`` file) handles."""

    state: JoinState
    tree: Tree
    rules: RuleSet
    limits: Limits = field(default_factory=Limits)
    stats: PipelineStats = field(default_factory=PipelineStats)
    #: When an alert was detected (ISO 8601 UTC): the wall clock.
    now_iso: Callable[[], str] = utc_now_iso
    #: Joins parked until their ancestry is settled, per partition and process.
    parked: parking.Parking = field(default_factory=parking.Parking)

    def forget(self) -> None:
        """After a rebalance: partitions may have changed hands; read them again."""
        self.state.forget()
        self.parked.forget()

    # --- an event ----------------------------------------------------------------

    def handle(
        self, fields: Row, partition: int, position: tuple[int, int], wall_ms: int
    ) -> list[Output]:
        """One event of the re-keying topic (its fields and bookkeeping, :mod:`rekey`).

        ``position``: (offset, index in its batch record), where it was read;
        ``wall_ms``: the wall clock. Raises ValueError (or anything a bad
        event causes): the caller dead-letters the event and goes on.
        """
        if not self.parked.loaded(partition):
            # After an assignment: the joins this partition's last owner parked.
            for key, error in self.parked.load(partition, self.state.parked(partition)):
                log.error("parked join %r of partition %d unreadable, dropped: %s",
                          key, partition, error)  # fmt: skip
        out: list[Output] = []
        event_id = fields.pop(EVENT_ID_FIELD)
        if event_id == TICK:
            return out  # only there to run expiry on a quiet partition
        received = fields.pop(RECEIVED_FIELD, None)
        event_time_ms = fields.pop(EVENT_TIME_FIELD)
        stream_time = self.state.stream_time(partition, wall_ms, event_time_ms)
        if event_id == TARGET_LOOKUP:
            self._target_lookup(out, fields, event_time_ms, partition, position)
            return out
        if event_id == PROCESS_CREATE:
            key = fields["process_guid"].encode()
            self.state.put_row(partition, key, fields, stream_time)
            self.stats.process_creates += 1
            ancestors = None
            if PROCESS_CREATE in self.limits.enrich_events or self.rules.needs_context(
                PROCESS_CREATE
            ):
                ancestors = self.tree.walk(fields, self.limits.ancestry_depth).ancestors
            self._detect(out, PROCESS_CREATE, fields, fields, event_time_ms, partition, wall_ms,
                         ancestors=ancestors)  # fmt: skip
            self._enriched(out, PROCESS_CREATE, fields, fields, ancestors, event_time_ms, partition)
            for waited in self.state.release(fields["process_guid"], partition):
                waited_id = waited.connect.pop(EVENT_ID_FIELD, NETWORK_CONNECT)
                if waited_id == TARGET_LOOKUP:
                    # A Sysmon 8/10 whose target is this process: its side, now.
                    self._target_found(out, waited.connect, fields, waited.event_time_ms)
                    continue
                if waited_id != NETWORK_CONNECT:
                    # Another kind of event, kept for its rules that use process
                    # context and for its enrichment.
                    waited.connect.pop(_ARRIVAL_RULES_DONE, None)
                    if waited_id == PROCESS_TERMINATE:
                        # It ended before its creation was read: the row waits for its
                        # retention, as if the two had come in order.
                        self.state.mark_terminated(partition, key,
                                                   waited.connect["event_date_creation"],
                                                   stream_time)  # fmt: skip
                    if ancestors is None:
                        ancestors = self.tree.walk(fields, self.limits.ancestry_depth).ancestors
                    self._detect(out, waited_id, waited.connect, fields, waited.event_time_ms,
                                 partition, wall_ms, context=True, ancestors=ancestors)  # fmt: skip
                    self._enriched(
                        out, waited_id, waited.connect, fields, ancestors,
                        waited.event_time_ms, partition, position=waited.position,
                    )  # fmt: skip
                    continue
                self.stats.network_connects_released += 1
                self._join(
                    out, waited.connect, fields, waited.event_time_ms, None, partition,
                    waited.position, wall_ms,
                )  # fmt: skip
            return out
        if event_id == PROCESS_TERMINATE:
            self.stats.process_terminates += 1
            key = fields["process_guid"].encode()
            # The row stays for the retention: connects logged after the
            # process ended (or read after its end) still join.
            ended_at = fields["event_date_creation"]
            stored = self.state.row(partition, key)
            if not self.state.mark_terminated(partition, key, ended_at, stream_time):
                self.stats.terminated_unknown += 1  # it started before the pipeline saw it
            if stored is not None:
                self._with_process(out, event_id, fields, orjson.loads(stored), event_time_ms,
                                   partition, position, wall_ms)  # fmt: skip
            else:
                self._without_process(out, event_id, fields, event_time_ms, partition, position,
                                      wall_ms)  # fmt: skip
            return out
        if event_id == NETWORK_CONNECT:
            self._connect(out, fields, event_time_ms, received, partition, position, wall_ms)
        elif event_id in SYSMON_EVENT_IDS:
            self._other_event(out, event_id, fields, event_time_ms, partition, position, wall_ms)
        else:
            raise ValueError(f"unexpected event id {event_id!r}")
        return out

    def _other_event(
        self, out: list[Output], event_id: int, fields: Row, event_time_ms: int,
        partition: int, position: tuple[int, int], wall_ms: int,
    ) -> None:  # fmt: skip
        """A Sysmon event other than 1/3/5: its rules and its enrichment, with its process."""
        self.stats.other_events += 1
        guid: str | None = fields.get("process_guid")
        if event_id == DNS_QUERY and guid is not None and self._names_connects():
            self._remember_answers(fields, guid, event_time_ms, partition, wall_ms)
        stored = self.state.row(partition, guid.encode()) if guid is not None else None
        if stored is not None:
            self._with_process(out, event_id, fields, orjson.loads(stored), event_time_ms,
                               partition, position, wall_ms)  # fmt: skip
            return
        self._without_process(out, event_id, fields, event_time_ms, partition, position, wall_ms)

    def _with_process(
        self, out: list[Output], event_id: int, fields: Row, process: Row, event_time_ms: int,
        partition: int, position: tuple[int, int], wall_ms: int,
    ) -> None:  # fmt: skip
        """An event (not a connect) whose process's row is there: its rules, its enrichment."""
        ancestors = None
        if event_id in self.limits.enrich_events or self.rules.needs_context(event_id):
            ancestors = self.tree.walk(process, self.limits.ancestry_depth).ancestors
        self._detect(out, event_id, fields, process, event_time_ms, partition, wall_ms,
                     ancestors=ancestors)  # fmt: skip
        self._enriched(out, event_id, fields, process, ancestors, event_time_ms, partition,
                       position=position)  # fmt: skip

    def _without_process(
        self, out: list[Output], event_id: int, fields: Row, event_time_ms: int,
        partition: int, position: tuple[int, int], wall_ms: int,
    ) -> None:  # fmt: skip
        """An event (not a connect) whose process is unknown now.

        Rules on the event alone fire at once; those that use context, and
        its enrichment, wait for the process's creation like a connect (the
        grace); when it cannot come, the enriched record goes out without its
        process and with the reason, and the context rules are not tried.
        """
        self._detect(out, event_id, fields, None, event_time_ms, partition, wall_ms, context=False)
        enriched = event_id in self.limits.enrich_events
        context_rules = self.rules.needs_context(event_id)
        if not enriched and not context_rules:
            return
        reason = self._cannot_wait(fields.get("process_guid"), event_time_ms)
        if reason is None:
            waiting = dict(fields)
            waiting[EVENT_ID_FIELD] = event_id
            waiting[_ARRIVAL_RULES_DONE] = True
            stream_time = self.state.stream_time(partition, wall_ms)
            if self.state.wait(waiting, event_time_ms, position, partition, stream_time):
                return
            reason = grace.OVERFLOW
        self.stats.context_rules_skipped += context_rules
        if enriched:
            self._enriched(out, event_id, fields, None, [], event_time_ms, partition, reason,
                           position=position)  # fmt: skip

    def _enriched(
        self, out: list[Output], event_id: int, fields: Row, process: Row | None,
        ancestors: list[Row] | None, event_time_ms: int, partition: int | None,
        unmatched_reason: str | None = None, *, position: tuple[int, int] | None = None,
    ) -> None:  # fmt: skip
        """The ``sysmon-enriched`` record of an event, when its id is enriched.

        ``process`` None: ``unmatched_reason`` says why. ``ancestors`` None:
        the ancestry was not walked because nothing needed it (then the id is
        not enriched). Sysmon 8/10 go on to their target's side first
        (:meth:`_target_side`: ``partition`` and ``position`` are where the event was read).
        """
        if event_id not in self.limits.enrich_events:
            return
        fields.pop(_ARRIVAL_RULES_DONE, None)
        record = enrich_event(event_id, fields, process, ancestors or [], unmatched_reason)
        if event_id == NETWORK_CONNECT:
            assert partition is not None
            record["dst_query_name"] = self._query_name(record, partition, event_time_ms)
        if partition is not None and self.limits.activity_recent:
            self._note_activity(record, partition)
        if event_id in TWO_PROCESS_EVENT_IDS:
            assert partition is not None and position is not None
            self._target_side(out, record, event_time_ms, partition, position)
            return
        self._emit_enriched(out, record, event_time_ms)

    def _emit_enriched(self, out: list[Output], record: Row, event_time_ms: int) -> None:
        guid = record.get("process_guid")
        out.append(Output(ENRICHED, guid.encode() if guid else None, record, event_time_ms / 1000))
        self.stats.enriched_by_event_id[record["event_id"]] += 1
        if record["unmatched_reason"] is not None:
            self.stats.enriched_unmatched_by_reason[record["unmatched_reason"]] += 1

    def _note_activity(self, record: Row, partition: int) -> None:
        """One more event in its process's summary (``GET /process/{guid}/activity``)."""
        guid = record.get("process_guid")
        if guid is None or record["event_id"] in activity.NOT_IN_SUMMARY:
            return
        summary, until_ms = self.state.activity_of(partition, guid)
        summary = activity.add(summary, record, self.limits.activity_recent)
        stream_time = self.state.last_stream_time(partition)
        self.state.keep_activity(partition, guid, summary, until_ms, stream_time)

    # --- DNS names on connects (sysmon_faust.core.dns_answers) ----------------------

    def _names_connects(self) -> bool:
        return NETWORK_CONNECT in self.limits.enrich_events and self.state.lifetimes.dns_ttl_ms > 0

    def _remember_answers(
        self, fields: Row, guid: str, at_ms: int, partition: int, wall_ms: int
    ) -> None:
        """A Sysmon 22's answers, kept for the connects of its process that follow."""
        event_data = fields.get(EVENT_DATA) or {}
        name = event_data.get("QueryName")
        results = event_data.get("QueryResults")
        if not isinstance(name, str) or not isinstance(results, str):
            return
        answered = dns_answers.addresses(results)
        if not answered:
            return  # a failed query, or CNAMEs only
        answers = dns_answers.add(
            self.state.dns_answers_of(partition, guid), name.rstrip(".").lower(), answered, at_ms,
            self.limits.dns_answers_per_process,
        )  # fmt: skip
        stream_time = self.state.stream_time(partition, wall_ms)
        self.state.keep_dns_answers(partition, guid, answers, stream_time)
        self.stats.dns_answers_kept += len(answered)

    def _query_name(self, connect: Row, partition: int, event_time_ms: int) -> str | None:
        """The name the connect's process asked DNS for its destination, if it did (recently)."""
        guid = connect.get("process_guid")
        if guid is None or not self._names_connects():
            return None
        answers = self.state.dns_answers_of(partition, guid)
        if not answers:
            return None
        name = dns_answers.name_for(
            answers, connect.get("dst_ip_addr"), event_time_ms, self.state.lifetimes.dns_ttl_ms
        )
        self.stats.connects_named += name is not None
        return name

    # --- the second process of Sysmon 8 and 10 -------------------------------------

    def _target_side(
        self, out: list[Output], record: Row, event_time_ms: int, partition: int,
        position: tuple[int, int],
    ) -> None:  # fmt: skip
        """A CreateRemoteThread/ProcessAccess record, its source side done: now its target's.

        The target's row lives in the partition of the target's GUID: looked up
        here when that is this partition, else the record goes there — a
        second hop through the re-keying topic (``TARGET_LOOKUP``), as Kafka
        Streams routes a foreign-key join — and :meth:`_target_lookup` ends it.
        """
        target = record.get("target_process_guid")
        if target is None:
            self._emit_enriched(out, with_target(record, None, [], NO_PROCESS_GUID), event_time_ms)
            return
        target_partition = key_partition(target.encode(), self.limits.partitions)
        if target_partition == partition:
            self._target_lookup(out, record, event_time_ms, partition, position)
            return
        # The record is this hop's alone from here: its bookkeeping goes on it.
        record[EVENT_ID_FIELD] = TARGET_LOOKUP
        record[EVENT_TIME_FIELD] = event_time_ms
        out.append(Output(REKEYED, target.encode(), record, event_time_ms / 1000,
                          partition=target_partition))  # fmt: skip
        self.stats.target_lookups_routed += 1

    def _target_lookup(
        self, out: list[Output], record: Row, event_time_ms: int, partition: int,
        position: tuple[int, int],
    ) -> None:  # fmt: skip
        """The target's side of a Sysmon 8/10 record, in the target's own partition.

        The source's ladder again, for the target: its row now, or a wait in the
        grace buffer for its creation — real recordings have it (Defender's
        MsMpEng.exe opens a process 3 ms before that process's ProcessCreate is
        logged: empire_wmi_dcerpc_wmi_IWbemServices_ExecMethod) — or the reason.
        """
        target = record["target_process_guid"]
        stored = self.state.row(partition, target.encode())
        if stored is not None:
            self._target_found(out, record, orjson.loads(stored), event_time_ms)
            return
        stream_time = self.state.last_stream_time(partition)
        reason = self._cannot_wait(target, event_time_ms)
        if reason is None and stream_time - event_time_ms > self.state.lifetimes.grace.grace_ms:
            # A grace of stream time has passed since the event (its source
            # waited it out, or the hop came late): the creation would be here.
            reason = grace.AFTER_GRACE
        if reason is None:
            waiting = dict(record)
            waiting[EVENT_ID_FIELD] = TARGET_LOOKUP
            if self.state.wait(waiting, event_time_ms, position, partition, stream_time, target):
                return
            reason = grace.OVERFLOW
        self._emit_enriched(out, with_target(record, None, [], reason), event_time_ms)

    def _target_found(
        self, out: list[Output], record: Row, target: Row, event_time_ms: int
    ) -> None:
        ancestors = self.tree.walk(target, self.limits.ancestry_depth).ancestors
        self._emit_enriched(out, with_target(record, target, ancestors, None), event_time_ms)

    def _detect(
        self, out: list[Output], event_id: int, fields: Row, process: Row | None,
        event_time_ms: int, partition: int, wall_ms: int, *, context: bool | None = None,
        ancestors: list[Row] | None = None, alert_event: Row | None = None,
    ) -> None:  # fmt: skip
        """The rules of ``event_id`` on one event, with its process (or None): alert on matches.

        ``context``: only the rules that use process context (True), only the
        others (False), all (None). ``ancestors``: the ancestry if walked
        already; ``alert_event``: the event as alerts carry it (default:
        :func:`enrich_event`).
        """
        rules = self.rules
        if not rules.covers(event_id):
            return
        tested = rules.fields_of(event_id)
        view = sigma_fields.event_fields(event_id, fields, tested)
        if process is not None:
            if ancestors is None:
                ancestors = (
                    self.tree.walk(process, self.limits.ancestry_depth).ancestors
                    if rules.needs_context(event_id)
                    else []
                )
            view = sigma_fields.with_context(view, event_id, process, ancestors, tested)
        matched = rules.match(event_id, view, context=context)
        if not matched:
            return
        if alert_event is None:
            alert_event = enrich_event(event_id, fields, process, ancestors or [])
        for rule in matched:
            self.stats.alert_matches += 1
            self.stats.alerts_by_rule[rule.rule_id] += 1
            self._alert(out, rule, event_id, alert_event, event_time_ms, partition, wall_ms)

    def _connect(
        self, out: list[Output], fields: Row, event_time_ms: int, received: float | None,
        partition: int, position: tuple[int, int], wall_ms: int,
    ) -> None:  # fmt: skip
        self.stats.network_connects += 1
        guid: str | None = fields.get("process_guid")
        if guid is None:
            self._detect(out, NETWORK_CONNECT, fields, None, event_time_ms, partition, wall_ms,
                         context=False, alert_event=enrich(fields, {}, []))  # fmt: skip
            self._unmatched(out, fields, None, NO_PROCESS_GUID, event_time_ms, partition)
            return
        key = guid.encode()
        stored = self.state.row(partition, key)
        stream_time = self.state.stream_time(partition, wall_ms)
        if stored is not None:
            self._join(
                out, fields, orjson.loads(stored), event_time_ms, received, partition,
                position, wall_ms,
            )  # fmt: skip
            return
        # Its process is unknown now: the rules on the connect alone fire as it arrives.
        self._detect(out, NETWORK_CONNECT, fields, None, event_time_ms, partition, wall_ms,
                     context=False, alert_event=enrich(fields, {}, []))  # fmt: skip
        fields[_ARRIVAL_RULES_DONE] = True
        reason = self._cannot_wait(guid, event_time_ms)
        if reason is None and not self.state.wait(
            fields, event_time_ms, position, partition, stream_time
        ):
            reason = grace.OVERFLOW
        if reason is not None:
            self._unmatched(out, fields, key, reason, event_time_ms, partition)

    def _join(
        self, out: list[Output], connect: Row, process: Row, event_time_ms: int,
        received: float | None, partition: int, position: tuple[int, int], wall_ms: int,
    ) -> None:  # fmt: skip
        """The connect joined with its process — or parked while an ancestor may still come."""
        guid = process["process_guid"]
        limits = self.limits
        behind = self.parked.holds(partition, guid)
        if behind and (
            behind >= limits.parked_per_process or self.parked.count() >= limits.parked_at_most
        ):
            # Parking is bounded per process (like waiting connects) and per
            # worker: the process's parked joins go now, with the ancestry known.
            self.stats.ancestry_parking_full += 1
            self._release(out, partition, guid, wall_ms, timed_out=False)
            behind = 0
        if not behind:
            walk = self.tree.walk(process, limits.ancestry_depth)
            if not self._may_come(walk.unknown, event_time_ms):
                self._joined(out, connect, process, walk.ancestors, event_time_ms, received,
                             partition, wall_ms)  # fmt: skip
                return
            if self.parked.count() >= limits.parked_at_most:
                self.stats.ancestry_parking_full += 1
                self._joined(out, connect, process, walk.ancestors, event_time_ms, received,
                             partition, wall_ms)  # fmt: skip
                return
        # Parked, and behind its process's parked joins: released in order.
        join = parking.ParkedJoin(
            key=parking.parked_key(guid, event_time_ms, *position),
            connect=connect,
            process=process,
            event_time_ms=event_time_ms,
            received=received,
            parked_at_ms=wall_ms,
            deadline_ms=wall_ms + limits.ancestry_wait_ms,
        )
        if self.parked.park(partition, join):
            self.state.park(partition, join)
            self.stats.ancestry_waits += 1

    def _cannot_wait(self, guid: str | None, event_time_ms: int) -> str | None:
        """Why an event whose process (``guid``) has no row now cannot wait for its
        creation — the unmatched reason — or None: it may wait (the grace buffer)."""
        grace_ms = self.state.lifetimes.grace.grace_ms
        if guid is None:
            return NO_PROCESS_GUID
        if not grace_ms:
            return PROCESS_UNKNOWN
        if not grace.creation_may_still_come(
            self._start_ms(guid, event_time_ms), event_time_ms, grace_ms
        ):
            return grace.STARTED_BEFORE_GRACE
        return None

    def _start_ms(self, guid: str, event_time_ms: int) -> int | None:
        """The start time in ``guid`` if plausible for the event (counted when not)."""
        start = guid_time.plausible_start_ms(guid, event_time_ms)
        if start.implausible is not None:
            self.stats.guid_start_time_implausible[start.implausible] += 1
        return start.ms

    def _may_come(self, ancestor: str | None, event_time_ms: int) -> bool:
        """Whether the link of the ancestor a walk stopped at may still come (so: park)."""
        if ancestor is None or not self.limits.ancestry_wait_ms:
            return False
        return self.tree.may_come(ancestor, self._start_ms(ancestor, event_time_ms))

    def _joined(
        self, out: list[Output], connect: Row, process: Row, ancestors: list[Row],
        event_time_ms: int, received: float | None, partition: int, wall_ms: int,
    ) -> None:  # fmt: skip
        enriched = enrich(connect, process, ancestors)
        key = enriched["process_guid"].encode()
        timestamp = event_time_ms / 1000
        out.append(Output(JOINED, key, enriched, timestamp))
        self.stats.joined += 1
        now = wall_ms / 1000
        self.stats.event_age.observe(max(now - timestamp, 0.0))
        if received is not None:
            self.stats.processing_latency.observe(max(now - received, 0.0))
        arrival_done = connect.pop(_ARRIVAL_RULES_DONE, False)
        self._enriched(out, NETWORK_CONNECT, connect, process, ancestors, event_time_ms, partition)
        self._detect(out, NETWORK_CONNECT, connect, process, event_time_ms, partition, wall_ms,
                     context=True if arrival_done else None, ancestors=ancestors,
                     alert_event=enriched)  # fmt: skip

    def _alert(
        self, out: list[Output], rule: SigmaRule, event_id: int, enriched: Row,
        event_time_ms: int, partition: int, wall_ms: int,
    ) -> None:  # fmt: skip
        """Alert on a match at once, or count it into its rule's open group on the process.

        The group's update goes out when its window closes (:meth:`after_record`).
        An event without a process identity alerts on its own.
        """
        guid = enriched.get("process_guid")
        window_ms = self.limits.alert_window_ms if guid is not None else 0
        stream_time = self.state.stream_time(partition, wall_ms, event_time_ms)
        if window_ms and guid is not None:
            found = self.state.open_alert_group(partition, rule.rule_id, guid, stream_time)
            if found is not None:
                group_key, group = found
                alert_groups.add_match(group, enriched, event_time_ms)
                self.state.keep_alert_group(partition, group, group_key)
                self.stats.alert_matches_grouped += 1
                return
        alert = alert_record(rule, event_id, enriched, self.now_iso())
        group = alert_groups.open_group(alert, event_time_ms, stream_time, window_ms)
        if window_ms:
            self.state.keep_alert_group(partition, group)
        first = alert_groups.first_alert_record(group)
        key = guid.encode() if guid is not None else None
        out.append(Output(ALERTS, key, first, event_time_ms / 1000))
        self.stats.alerts += 1

    def _unmatched(
        self, out: list[Output], connect: Row, key: bytes | None, reason: str,
        event_time_ms: int, partition: int,
    ) -> None:  # fmt: skip
        # Its rules on the connect alone ran; those on its process's context cannot.
        self.stats.context_rules_skipped += self.rules.needs_context(NETWORK_CONNECT)
        out.append(Output(UNMATCHED, key, unmatched_record(connect, reason), event_time_ms / 1000))
        self._enriched(out, NETWORK_CONNECT, connect, None, [], event_time_ms, partition, reason)
        self.stats.unmatched += 1
        self.stats.unmatched_by_reason[reason] += 1

    # --- what falls due --------------------------------------------------------------

    def after_record(self, partition: int, wall_ms: int) -> list[Output]:
        """After a record of ``partition``: release parked joins that may go, expire what is due.

        Raises what a step raised; what is due stays due, and the next
        record of the partition tries again.
        """
        out: list[Output] = []
        self._release_parked(out, partition, wall_ms)
        self._expire_due(out, partition, wall_ms)
        return out

    def finish(self, partition: int, wall_ms: int) -> list[Output]:
        """The end of a recording (``rules test``): every wait ends, every group closes."""
        out: list[Output] = []
        for guid, _ in self.parked.processes(partition):
            self._release(out, partition, guid, wall_ms, timed_out=True)
        # Twice: a Sysmon 8/10 whose source's wait ends here may start its
        # target's (:meth:`_target_lookup`), which ends in the second round.
        for _ in range(2):
            self._expire_due(out, partition, wall_ms, stream_time=END_OF_TIME, at_most=END_OF_TIME)
        return out

    def _release_parked(self, out: list[Output], partition: int, wall_ms: int) -> None:
        """Release the parked joins of ``partition`` whose ancestry is settled or wait is over."""
        if not self.parked.due_for_a_look(partition, self.tree.version, wall_ms):
            return
        self.parked.looked(partition, self.tree.version, wall_ms)
        for guid, joins in self.parked.processes(partition):
            timed_out = min(join.deadline_ms for join in joins) <= wall_ms
            if not timed_out:
                walk = self.tree.walk(joins[0].process, self.limits.ancestry_depth)
                if self._may_come(walk.unknown, joins[0].event_time_ms):
                    continue
            self._release(out, partition, guid, wall_ms, timed_out)

    def _release(
        self, out: list[Output], partition: int, guid: str, wall_ms: int, timed_out: bool
    ) -> None:
        """Every parked join of the process, in order, with the ancestry known now."""
        joins = self.parked.take(partition, guid)
        if not joins:
            return
        ancestors = self.tree.walk(joins[0].process, self.limits.ancestry_depth).ancestors
        for join in joins:
            # Its record leaves the table once the joined record is in Kafka (settle).
            self.state.unpark(partition, join.key)
            self.stats.ancestry_wait_timeouts += timed_out
            waited_s = max(wall_ms - join.parked_at_ms, 0) / 1000
            self.stats.ancestry_wait_seconds[partition] = (
                self.stats.ancestry_wait_seconds.get(partition, 0.0) + waited_s
            )
            self._joined(out, join.connect, join.process, ancestors, join.event_time_ms,
                         join.received, partition, wall_ms)  # fmt: skip

    def _expire_due(
        self, out: list[Output], partition: int, wall_ms: int, stream_time: int | None = None,
        at_most: int | None = None,
    ) -> None:  # fmt: skip
        """Let go of the waiting connects, rows and alert groups whose time has come."""
        now = self.state.stream_time(partition, wall_ms) if stream_time is None else stream_time
        if now < 0:
            return
        if stream_time is None:
            self.state.keep_stream_time(partition, now)
        expired = self.state.expire_due(partition, now, at_most or self.limits.expire_at_most)
        self.stats.rows_expired_after_termination += expired.rows_after_termination
        self.stats.rows_expired_after_ttl += expired.rows_after_ttl
        for waited in expired.connects:
            waited_id = waited.connect.pop(EVENT_ID_FIELD, NETWORK_CONNECT)
            if waited_id != NETWORK_CONNECT:
                # Another kind of event whose process never came: its rules on
                # the event alone ran when it arrived; those on context cannot.
                if waited_id == TARGET_LOOKUP:
                    record = with_target(waited.connect, None, [], grace.AFTER_GRACE)
                    self._emit_enriched(out, record, waited.event_time_ms)
                    continue
                self.stats.context_rules_skipped += self.rules.needs_context(waited_id)
                self._enriched(out, waited_id, waited.connect, None, [], waited.event_time_ms,
                               partition, grace.AFTER_GRACE, position=waited.position)  # fmt: skip
                continue
            waited.connect.pop(_ARRIVAL_RULES_DONE, None)
            key = waited.connect["process_guid"].encode()
            self._unmatched(out, waited.connect, key, grace.AFTER_GRACE, waited.event_time_ms,
                            partition)  # fmt: skip
        for group in expired.alert_groups:
            update = alert_groups.closing_record(group, self.now_iso())
            final = update or alert_groups.final_record(group, self.now_iso())
            key = group.process_guid.encode() if group.process_guid is not None else None
            out.append(Output(ALERTS, key, final, group.last_seen_ms / 1000, update is not None))
            self.stats.alert_group_updates += update is not None
        self.stats.pending = self.state.waiting()
        self.stats.ancestry_parked = self.parked.count()
