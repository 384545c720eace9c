"""One recording through the whole pipeline, in memory: ``rules test``, on the worker's engine.

:class:`LocalJoin` does, for a stream of normalized events read in file
order, what a worker's intake and join do for a partition: a ProcessCreate's
parent link goes to the process tree before the events after it
(:mod:`sysmon_faust.stream.tree_replica` in the worker), and every event goes
through the same :class:`~sysmon_faust.core.join.engine.JoinEngine` over an
:class:`~sysmon_faust.core.join.store.InMemoryStore`. What differs, and why:

* one partition and one stream time, the greatest event time read so far —
  no wall clock in between (a recording is read in seconds; the worker's
  stream time also moves with the wall clock, so that a quiet partition
  still lets go);
* every record is acknowledged as soon as it is made (no Kafka): what the
  engine handed out is settled after each event, or when the caller says
  (:meth:`feed`'s ``settle``; a worker deletes handed-out entries once their
  records are acknowledged and writes the activity summaries before each commit);
* every link is known when it is read: no join waits for an ancestor
  (``ancestry_wait_ms`` is 0 whatever ``limits`` says, and ``partitions``
  1: a Sysmon 8/10's target is looked up in place);
* at the end of the file (:meth:`finish`) every wait ends and every alert
  group closes — as if stream time went on for ever.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from sysmon_faust.core.ancestry import Walk, ancestry, encode_link
from sysmon_faust.core.join.engine import JoinEngine, Limits, Output
from sysmon_faust.core.join.grace import GraceLimits
from sysmon_faust.core.join.semantics import Row
from sysmon_faust.core.join.state import JoinState, Lifetimes
from sysmon_faust.core.join.store import InMemoryStore
from sysmon_faust.core.normalize import PROCESS_CREATE, NormalizedEvent
from sysmon_faust.core.rekey import event_record
from sysmon_faust.core.sigma.ruleset import RuleSet
from sysmon_faust.core.stats import PipelineStats

#: The partition a recording is joined in.
PARTITION = 0


@dataclass
class InMemoryTree:
    """Every parent link read so far (:mod:`sysmon_faust.core.ancestry`); nothing is in flight."""

    links: dict[str, bytes] = field(default_factory=dict)
    version: int = 0

    def record(self, row: Row) -> None:
        self.links[row["process_guid"]] = encode_link(row)
        self.version += 1

    def forget(self, guid: str) -> None:
        self.links.pop(guid, None)

    def walk(self, row: Row, depth: int) -> Walk:
        return ancestry(row, self.links.get, depth)

    def may_come(self, guid: str, start_ms: int | None) -> bool:
        return False  # one stream, read in order: a link not read yet is not coming first


class LocalJoin:
    """One recording through the worker's join engine (see the module docstring).

    ``lifetimes`` and ``limits`` are the worker's (:mod:`sysmon_faust.engine_limits`
    builds both from the settings); ``feed`` each event in file order, then
    ``finish``. Each returns the engine's outputs.
    """

    def __init__(
        self, rules: RuleSet, lifetimes: Lifetimes, limits: Limits,
        stats: PipelineStats | None = None,
    ) -> None:  # fmt: skip
        self.tree = InMemoryTree()
        self.state = JoinState(InMemoryStore(), InMemoryStore(), InMemoryStore(), lifetimes)
        one_file = replace(limits, ancestry_wait_ms=0, partitions=1)
        self.engine = JoinEngine(self.state, self.tree, rules, one_file, stats or PipelineStats())
        # One wall-clock reading for the whole file: stream time is the
        # events' own (see the module docstring).
        self._wall_ms = int(time.time() * 1000)
        self._read = 0

    @classmethod
    def with_defaults(
        cls, rules: RuleSet, grace_ms: int, depth: int, window_ms: int,
        retention_ms: int = 3600_000, ttl_ms: int = 7 * 86400_000,
        enrich_events: frozenset[int] = frozenset(),
    ) -> LocalJoin:  # fmt: skip
        """For tests: the settings' defaults (tests/unit/test_engine_limits.py holds them
        equal) but for the grace, the ancestry depth, the alert window and the event ids
        enriched, and the table's retention and TTL when given."""
        grace = GraceLimits(grace_ms=grace_ms, max_per_process=1_000, max_total=200_000)
        return cls(
            rules,
            Lifetimes(grace=grace, retention_ms=retention_ms, ttl_ms=ttl_ms),
            Limits(
                ancestry_depth=depth,
                alert_window_ms=window_ms,
                enrich_events=enrich_events,
            ),
        )

    @property
    def waiting(self) -> int:
        """Connects waiting for their process's creation."""
        return self.state.waiting()

    def feed(self, event: NormalizedEvent, *, settle: bool = True) -> list[Output]:
        """One event, read next in the file: what it made, and what fell due after it.

        ``settle`` False: what it handed out stays in the state until :meth:`settle`
        — the activity summaries kept since, above all, which a worker writes
        before each commit, every few seconds, not per event. The records made
        are the same (tests/unit/core/join/test_local.py).
        """
        if event.event_id == PROCESS_CREATE and event.process_guid is not None:
            self.tree.record(event.fields)  # before the events after it, as the intake does
        fields: Row = event_record(event)  # as the intake writes it
        self._read += 1
        made = self.engine.handle(fields, PARTITION, (self._read, 0), self._wall_ms)
        made += self.engine.after_record(PARTITION, self._wall_ms)
        if settle:
            self.settle()
        return made

    def finish(self) -> list[Output]:
        """The end of the file: every connect still waiting is unmatched, every group closes."""
        made = self.engine.finish(PARTITION, self._wall_ms)
        self.settle()
        return made

    def settle(self) -> None:
        """Take as done what was handed out so far (see :meth:`feed`)."""
        # Everything it made is "in Kafka" at once: what was handed out goes
        # now, rows deleted take their links with them, changelog writes are
        # nobody's business.
        self.state.settle()
        self.state.flush_activity()
        for _, key, _ in self.state.take_tree_changes():
            self.tree.forget(key.decode())
        self.state.unsent_changes()
