"""``python -m sysmon_faust rules test FILE...``: what the detection rules would fire on recordings.

The analyst's loop for writing a rule: edit the rules file, run this over a
few recordings, read the alerts. No broker and no worker: each recording goes
through the pipeline's own pieces — :func:`sysmon_faust.cli.recordings.read_records`
(exactly what ``replay`` would load), :func:`sysmon_faust.core.normalize.normalize`,
the join with its grace and the process ancestry (:class:`OfflineJoin`), then
:func:`sysmon_faust.core.rules.matching_rules` — and every alert is printed as the
``sysmon-alerts`` record the worker would write (:func:`sysmon_faust.core.rules.alert_record`).

The offline join, per file (the state starts empty for each file; the files
are read one after another):

* Stream time is the greatest event time read so far in the file.
* A ProcessCreate becomes the row of its process and its parent link
  (:func:`sysmon_faust.core.ancestry.encode_link`); the connects waiting for
  that process are then joined, in event-time order (file order for equal
  times).
* A NetworkConnect with the zero GUID is unmatched (``no_process_guid``); one
  whose process has a row is joined at once; one whose creation may still
  come (:func:`sysmon_faust.core.join.grace.creation_may_still_come`) waits for it,
  until a deadline of the stream time when it was read + the grace; any
  other is unmatched (``process_unknown`` without a grace,
  ``process_started_before_grace`` with one).
* After each event, the waiting connects whose deadline stream time has
  reached are unmatched (``process_unknown_after_grace``) — due when
  deadline <= stream time, as in the worker (``JoinState.expire_due``). At the
  end of the file every connect still waiting is.
* A joined connect carries its process's ancestry as known when it is joined:
  the parent links of the creations read so far in the file, up to the depth.

How that differs from the streaming worker, and why it does not matter for
minutes-long recordings:

* One process, one stream time per file. The worker re-keys events by
  process GUID over partitions, each with its own stream time, which also
  moves on with the wall clock while a partition is quiet.
* No retention: ProcessTerminate (Sysmon 5) is ignored and every row stays
  until the end of the file (the worker forgets a row SYSMON_TABLE_RETENTION
  after its process ended, and any row after SYSMON_TABLE_TTL).
* No buffer limits (SYSMON_PENDING_PER_PROCESS / SYSMON_PENDING_MAX): no
  connect is turned away as ``pending_overflow``.
* The ancestry comes from the creations of this file only; the worker's tree
  also holds what it read before.
* ``detected_at`` is the time of this run.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NoReturn, TextIO

import orjson

from sysmon_faust.cli.recordings import OnNote, RecordingError, kind, read_records
from sysmon_faust.core import alert_groups, guid_time
from sysmon_faust.core.ancestry import ancestry, encode_link
from sysmon_faust.core.clock import utc_now_iso
from sysmon_faust.core.join import grace, semantics
from sysmon_faust.core.join.semantics import Row
from sysmon_faust.core.normalize import (
    NETWORK_CONNECT,
    NOT_WINDOWS_EVENT,
    PROCESS_CREATE,
    Filtered,
    Invalid,
    NormalizedEvent,
    file_name,
    normalize,
    parse_utc_time,
)
from sysmon_faust.core.rules import Rule, RuleError, alert_record, load_rules, matching_rules
from sysmon_faust.core.shapes import LOOKED_FOR
from sysmon_faust.settings import Settings, SettingsError

#: The worker's defaults; the environment's settings are read, as the
#: worker's are, by sysmon_faust.settings (which builds no app).
DEFAULT_GRACE_S: Final = int(Settings.join_grace)
DEFAULT_DEPTH: Final = Settings.ancestry_depth
DEFAULT_WINDOW_S: Final = int(Settings.alert_window)
MAX_WINDOW_S: Final = 7 * 86400  # as SYSMON_ALERT_WINDOW allows
MAX_GRACE_S: Final = 7 * 86400  # as SYSMON_JOIN_GRACE allows
MAX_DEPTH: Final = 64

_RULES_HINT: Final = "fix the rule or point --rules / SYSMON_RULES at another file"
_PROGRESS_EVERY: Final = 5000  # events between two progress updates on a terminal


# --- the alert record ---------------------------------------------------------


# --- the offline join -----------------------------------------------------------


@dataclass(slots=True)
class _Waiting:
    """A connect waiting for its process's creation."""

    connect: Row
    guid: str
    event_time_ms: int
    deadline_ms: int
    done: bool = False  # joined or expired: its entry in the deadline queue is stale


@dataclass(frozen=True, slots=True)
class Produced:
    """The records one event (or the end of a file) made: ``sysmon-join`` and unmatched rows."""

    joined: list[Row] = field(default_factory=list)
    unmatched: list[Row] = field(default_factory=list)


class OfflineJoin:
    """The join of one recording, in file order, in memory (see the module docstring).

    ``feed`` each :class:`NormalizedEvent` in file order, then ``finish``.
    """

    def __init__(self, grace_ms: int, depth: int) -> None:
        self.grace_ms = grace_ms
        self.depth = depth
        #: The greatest event time read so far; None before the first event.
        self.stream_time_ms: int | None = None
        self._rows: dict[str, Row] = {}
        self._links: dict[str, bytes] = {}
        self._waiting: dict[str, list[_Waiting]] = {}
        # Deadlines are stream time + the grace and stream time never goes
        # back, so the queue is in deadline order without sorting.
        self._deadlines: deque[_Waiting] = deque()

    @property
    def waiting(self) -> int:
        """Connects waiting for their process's creation."""
        return sum(len(waiting) for waiting in self._waiting.values())

    def feed(self, event: NormalizedEvent) -> Produced:
        """Join one event; what it produced, including the connects it let expire."""
        time_ms = event.timestamp_ms
        if self.stream_time_ms is None or time_ms > self.stream_time_ms:
            self.stream_time_ms = time_ms
        produced = Produced()
        if event.event_id == PROCESS_CREATE:
            produced.joined.extend(self._create(event.fields))
        elif event.event_id == NETWORK_CONNECT:
            self._connect(event.fields, time_ms, produced)
        # ProcessTerminate: retention is not simulated (module docstring).
        produced.unmatched.extend(self._expire(self.stream_time_ms))
        return produced

    def finish(self) -> Produced:
        """The end of the file: every connect still waiting is unmatched after the grace."""
        return Produced(unmatched=self._expire(None))

    def _create(self, row: Row) -> list[Row]:
        guid = row["process_guid"]
        self._rows[guid] = row
        self._links[guid] = encode_link(row)
        released = self._waiting.pop(guid, [])
        # sorted() is stable: connects of equal times stay in file order.
        released.sort(key=lambda waiting: waiting.event_time_ms)
        for waiting in released:
            waiting.done = True
        return [self._enrich(waiting.connect, row) for waiting in released]

    def _connect(self, connect: Row, time_ms: int, produced: Produced) -> None:
        guid: str | None = connect.get("process_guid")
        if guid is None:
            produced.unmatched.append(semantics.unmatched(connect, semantics.NO_PROCESS_GUID))
        elif guid in self._rows:
            produced.joined.append(self._enrich(connect, self._rows[guid]))
        elif not self.grace_ms:
            produced.unmatched.append(semantics.unmatched(connect, semantics.PROCESS_UNKNOWN))
        elif not grace.creation_may_still_come(
            guid_time.plausible_start_ms(guid, time_ms).ms, time_ms, self.grace_ms
        ):
            produced.unmatched.append(semantics.unmatched(connect, grace.STARTED_BEFORE_GRACE))
        else:
            assert self.stream_time_ms is not None  # set by feed() before
            waiting = _Waiting(connect, guid, time_ms, self.stream_time_ms + self.grace_ms)
            self._waiting.setdefault(guid, []).append(waiting)
            self._deadlines.append(waiting)

    def _enrich(self, connect: Row, row: Row) -> Row:
        walk = ancestry(row, self._links.get, self.depth)
        return semantics.enrich(connect, row, walk.ancestors)

    def _expire(self, stream_time_ms: int | None) -> list[Row]:
        """Unmatch the connects due at ``stream_time_ms`` (all of them for None)."""
        expired = []
        while self._deadlines:
            waiting = self._deadlines[0]
            if stream_time_ms is not None and waiting.deadline_ms > stream_time_ms:
                break
            self._deadlines.popleft()
            if waiting.done:
                continue  # joined when its creation came
            waiting.done = True
            self._forget(waiting)
            expired.append(semantics.unmatched(waiting.connect, grace.AFTER_GRACE))
        return expired

    def _forget(self, waiting: _Waiting) -> None:
        others = self._waiting[waiting.guid]
        others.remove(waiting)
        if not others:
            del self._waiting[waiting.guid]


# --- one recording ----------------------------------------------------------------


@dataclass
class FileReport:
    """What one recording gave."""

    path: str
    events: int = 0
    #: Sysmon events of any id, invalid ones aside (the "Sysmon" column of
    #: ../shared/datasets/README.md).
    sysmon: int = 0
    #: Sysmon 1, 3 and 5: the events the pipeline handles.
    handled: int = 0
    filtered: int = 0
    #: Records of no Windows event shape (sysmon_faust.core.shapes.LOOKED_FOR), among ``filtered``.
    no_shape: int = 0
    invalid: int = 0
    creates: int = 0
    connects: int = 0
    joined: int = 0
    unmatched: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)  # matches, by rule_id
    #: Alert groups closed (each one line of the human output), by rule_id.
    alert_groups: Counter[str] = field(default_factory=Counter)

    def add(self, other: FileReport) -> None:
        """Add ``other``'s counts to these (for the total)."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unmatched.update(other.unmatched)
        self.alerts.update(other.alerts)
        self.alert_groups.update(other.alert_groups)


_COUNTS: Final = (
    "events",
    "sysmon",
    "handled",
    "filtered",
    "no_shape",
    "invalid",
    "creates",
    "connects",
    "joined",
)


@dataclass(frozen=True, slots=True)
class Detection:
    """An alert record: the file it came from (as given), the rule, the ``sysmon-alerts`` record.

    ``written``: the worker writes this record (a group's first alert, or its
    update when it closes with more than one match); ``closes_group``: it is
    the group's final state (``alert["alert_group"]`` has the count) —
    also for a one-match group, whose first alert is all the worker writes.
    """

    file: str
    rule: Rule
    alert: Row
    written: bool = True
    closes_group: bool = True


class OfflineAlerts:
    """The alert groups of one recording, in memory, through :mod:`sysmon_faust.core.alert_groups`.

    As the worker groups: per rule and process, a window of ``window_ms``
    of stream time from the first match; 0: every match is a group of one.
    """

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._open: dict[tuple[str, str], alert_groups.AlertGroup] = {}
        self._rules: dict[str, Rule] = {}
        # Closing times are stream time + the window and stream time never
        # goes back: the queue is in closing order without sorting.
        self._closing: deque[alert_groups.AlertGroup] = deque()

    def match(
        self, file: str, rule: Rule, enriched: Row, event_time_ms: int, stream_time_ms: int
    ) -> list[Detection]:
        """One match: the records it makes (closed groups first, then a new group's alert)."""
        made = self.close_due(file, stream_time_ms)
        key = (rule.rule_id, enriched["process_guid"])
        group = self._open.get(key)
        if group is not None:
            alert_groups.add_match(group, enriched, event_time_ms)
            return made
        alert = alert_record(rule, enriched, utc_now_iso())
        group = alert_groups.open_group(alert, event_time_ms, stream_time_ms, self.window_ms)
        first = alert_groups.first_alert_record(group)
        if not self.window_ms:
            return [*made, Detection(file, rule, first)]
        self._open[key] = group
        self._rules[rule.rule_id] = rule
        self._closing.append(group)
        return [*made, Detection(file, rule, first, written=True, closes_group=False)]

    def close_due(self, file: str, stream_time_ms: int | None) -> list[Detection]:
        """The groups closed at ``stream_time_ms`` (all of them for None: the end of the file)."""
        made = []
        while self._closing and (
            stream_time_ms is None or alert_groups.is_closed(self._closing[0], stream_time_ms)
        ):
            group = self._closing.popleft()
            del self._open[(group.rule_id, group.process_guid)]
            update = alert_groups.closing_record(group, utc_now_iso())
            final = update or alert_groups.final_record(group, utc_now_iso())
            made.append(Detection(file, self._rules[group.rule_id], final, update is not None))
        return made


OnDetection = Callable[[Detection], None]
OnProgress = Callable[[int], None]


def check_file(
    path: Path,
    rules: Sequence[Rule],
    grace_ms: int,
    depth: int,
    on_detection: OnDetection,
    on_progress: OnProgress | None = None,
    on_note: OnNote | None = None,
    *,
    window_ms: int,
) -> FileReport:
    """Run one recording through normalization, the join and ``rules``.

    Calls ``on_detection`` for each alert record as the worker would make it
    (grouped within ``window_ms``; 0: one per match). Raises
    :class:`sysmon_faust.cli.recordings.RecordingError` when the file cannot be read.
    """
    report = FileReport(str(path))
    offline = OfflineJoin(grace_ms, depth)
    alerts = OfflineAlerts(window_ms)
    for raw in read_records(path, on_note):
        report.events += 1
        if on_progress is not None and report.events % _PROGRESS_EVERY == 0:
            on_progress(report.events)
        outcome = normalize(raw)
        if isinstance(outcome, Invalid):
            report.invalid += 1
        elif isinstance(outcome, Filtered):
            report.filtered += 1
            report.no_shape += outcome.reason == NOT_WINDOWS_EVENT
            if outcome.event_id is not None:  # a Sysmon event of an id the pipeline drops
                report.sysmon += 1
        else:
            _count_event(report, outcome)
            produced = offline.feed(outcome)
            _settle(report, produced, rules, alerts, offline.stream_time_ms, on_detection)
    _settle(report, offline.finish(), rules, alerts, None, on_detection)
    return report


def _count_event(report: FileReport, event: NormalizedEvent) -> None:
    report.sysmon += 1
    report.handled += 1
    report.creates += event.event_id == PROCESS_CREATE
    report.connects += event.event_id == NETWORK_CONNECT


def _settle(
    report: FileReport,
    produced: Produced,
    rules: Sequence[Rule],
    alerts: OfflineAlerts,
    stream_time_ms: int | None,
    on_detection: OnDetection,
) -> None:
    """Count what an event (or the end of the file: ``stream_time_ms`` None) produced; alert."""
    report.unmatched.update(row["unmatched_reason"] for row in produced.unmatched)
    made: list[Detection] = []
    for enriched in produced.joined:
        report.joined += 1
        event_time_ms = parse_utc_time(enriched["event_date_creation"])[1]
        for rule in matching_rules(enriched, rules):
            report.alerts[rule.rule_id] += 1
            now = stream_time_ms if stream_time_ms is not None else event_time_ms
            made += alerts.match(report.path, rule, enriched, event_time_ms, now)
    made += alerts.close_due(report.path, stream_time_ms)
    for detection in made:
        report.alert_groups[detection.rule.rule_id] += detection.closes_group
        on_detection(detection)


# --- output ------------------------------------------------------------------------


def alert_line(detection: Detection) -> str:
    """One alert for a reader: file, rule, when, where, which process, to where, its ancestry."""
    event = detection.alert["event"]
    rule = detection.rule
    ancestors = [
        file_name(ancestor.get("process_path")) or "?"
        for ancestor in event.get("process_ancestry") or []
    ]
    return "  ".join(
        (
            Path(detection.file).name,
            rule.rule_id,
            f"{rule.attack_technique} {rule.severity}",
            event.get("event_date_creation") or "?",
            event.get("host_name") or "?",
            f"{event.get('process_name') or '?'} {event.get('process_guid')} -> "
            + _destinations(detection.alert),
            "ancestry: " + (" < ".join(ancestors) or "-"),
        )
    )


def _destinations(alert: Row) -> str:
    """Where the group's matches went, and how many there were when more than one."""
    group = alert.get("alert_group") or {}
    if group.get("count", 1) <= 1:
        return _destination(alert["event"])
    listed = group["destinations"] or [_destination(alert["event"])]
    more = group.get("destinations_not_listed", 0)
    where = ", ".join(listed) + (f" and {more} more" if more else "")
    return f"{where} ({group['count']} matches, {group['first_seen']} to {group['last_seen']})"


def _destination(event: Row) -> str:
    address = event.get("dst_ip_addr") or event.get("dst_host_name") or "?"
    if ":" in address:  # IPv6
        address = f"[{address}]"
    port = event.get("dst_port")
    return f"{address}:{port if port is not None else '?'}"


def json_line(detection: Detection) -> str:
    """One alert as a JSON line: where it came from, the rule, the process, the alert record."""
    return orjson.dumps(
        {
            "file": detection.file,
            "rule_id": detection.rule.rule_id,
            "attack_technique": detection.rule.attack_technique,
            "severity": detection.rule.severity,
            "process_guid": detection.alert["event"].get("process_guid"),
            "alert": detection.alert,
        }
    ).decode()


def summary_lines(report: FileReport, title: str) -> list[str]:
    """A file's (or the total's) counts, a few indented lines under ``title``."""
    reasons = ", ".join(f"{reason} {count}" for reason, count in report.unmatched.most_common())
    rules = ", ".join(f"{rule_id} {count}" for rule_id, count in report.alerts.most_common())
    return [
        title,
        f"  events {report.events}: Sysmon {report.sysmon} (1/3/5: {report.handled}), "
        f"filtered {report.filtered}, invalid {report.invalid}",
        f"  creations {report.creates}; connects {report.connects}: joined {report.joined}, "
        f"unmatched {report.unmatched.total()}" + (f" ({reasons})" if reasons else ""),
        f"  alerts: {report.alerts.total()} matches in {report.alert_groups.total()} group(s)"
        + (f": {rules}" if rules else ""),
        *(
            [f"  {report.no_shape} record(s) of no Windows event shape: {LOOKED_FOR}"]
            if report.no_shape
            else []
        ),
    ]


class _TerminalProgress:
    """Events read so far, on stderr, only when stderr is a terminal (never in logs or pipes)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.label = ""

    def start(self, label: str) -> OnProgress | None:
        self.label = label
        return self.show if self.enabled else None

    def show(self, events: int) -> None:
        self.stream.write(f"\r{self.label}: {events:,} events")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


# --- command line ---------------------------------------------------------------------


class UsageError(Exception):
    """Bad arguments, options or environment: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line instead of argparse's usage + message: the analyst reruns with --help.
        raise UsageError(f"{message} (see --help)")


_DESCRIPTION = """\
Test detection rules offline: run recordings (.json, .jsonl, .gz, .evtx, and
.tar.gz/.zip archives of them, as `replay` would load them) through
normalization, the join (with the grace and the process ancestry, in file
order) and the rules, and print what would fire.
No broker is needed.

Each file is joined on its own, in memory: stream time is the greatest event
time read so far; a connect whose creation has not come waits for it up to
--grace seconds of stream time (all still waiting at the end of the file
expire); ancestry is built from the creations read so far. Not simulated:
row retention (ProcessTerminate is ignored; recordings are minutes long) and
the limits of the grace buffer.
"""

_EPILOG = """\
output: one line per alert (file, rule, ATT&CK technique and severity, event
time, host, process and GUID -> destination, ancestry nearest first), then per
file the counts (events, joins, unmatched by reason, alerts by rule) and a total.
With --json stdout holds only JSON lines, one per alert
({"file", "rule_id", "attack_technique", "severity", "process_guid", "alert"}
where "alert" is the sysmon-alerts record); the counts go to stderr.

exit status: 0 when it ran (whether or not a rule fired); 2 for a bad rules
file, a missing or unreadable input file, or bad options.
"""


@dataclass(frozen=True, slots=True)
class Options:
    files: list[Path]
    rules: Path | None
    grace_ms: int
    depth: int
    json: bool
    window_ms: int = int(Settings.alert_window * 1000)


def _bounded_int(raw: str, name: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise UsageError(f"{name}={value} is out of range ({low}..{high})")
    return value


def _parser(prog: str) -> _Parser:
    parser = _Parser(
        prog=prog,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "files", nargs="+", type=Path, metavar="FILE",
        help=".json, .jsonl, .gz, .evtx recordings, or .tar.gz/.tgz/.tar.bz2/.zip archives of them",
    )  # fmt: skip
    parser.add_argument(
        "--rules", type=Path, metavar="PATH",
        help="rules file (default: SYSMON_RULES if set, else the shipped default rules)",
    )  # fmt: skip
    parser.add_argument(
        "--grace", metavar="SECONDS",
        help=f"join grace in seconds of stream time, 0 for none "
        f"(default: SYSMON_JOIN_GRACE or {DEFAULT_GRACE_S})",
    )  # fmt: skip
    parser.add_argument(
        "--depth", metavar="N",
        help=f"ancestors per alert (default: SYSMON_ANCESTRY_DEPTH or {DEFAULT_DEPTH})",
    )  # fmt: skip
    parser.add_argument(
        "--window", metavar="SECONDS",
        help="alert group window in seconds of stream time, 0: every match alerts "
        f"(default: SYSMON_ALERT_WINDOW or {DEFAULT_WINDOW_S})",
    )  # fmt: skip
    parser.add_argument(
        "--json", action="store_true",
        help="JSON lines on stdout, one per record the worker would write to sysmon-alerts "
        "(a group's first alert, and its update when it closes); counts on stderr",
    )  # fmt: skip
    return parser


def parse_options(argv: Sequence[str], prog: str) -> Options:
    """The options of ``rules test``; raises :class:`UsageError` for bad ones."""
    args = _parser(prog).parse_args(argv)
    try:
        settings = Settings.from_env()  # the defaults: what a worker here would use
    except SettingsError as error:
        raise UsageError(f"bad setting: {error}") from None
    rules = args.rules if args.rules is not None else settings.rules_path
    grace_s = (
        int(settings.join_grace)
        if args.grace is None
        else _bounded_int(args.grace, "--grace", 0, MAX_GRACE_S)
    )
    depth = (
        settings.ancestry_depth
        if args.depth is None
        else _bounded_int(args.depth, "--depth", 0, MAX_DEPTH)
    )
    window_s = (
        int(settings.alert_window)
        if args.window is None
        else _bounded_int(args.window, "--window", 0, MAX_WINDOW_S)
    )
    return Options(args.files, rules, grace_s * 1000, depth, args.json, window_s * 1000)


def _check_readable(files: Iterable[Path]) -> None:
    # Before any output: a typo in the last file name should not come after
    # pages of alerts from the first ones.
    for path in files:
        if not path.is_file():
            raise UsageError(f"no such file: {path}")
        kind(path)  # a file of no kind read here: RecordingError, naming it
        try:
            path.open("rb").close()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _load(path: Path | None) -> tuple[Rule, ...]:
    try:
        return load_rules(path)
    except RuleError as exc:
        # The message names the file, the rule and the field (a missing file too).
        raise UsageError(f"{exc}; {_RULES_HINT}") from None


def run(options: Options, out: TextIO, err: TextIO) -> None:
    """Check every file, printing alerts and counts; raises RecordingError/UsageError."""
    rules = _load(options.rules)
    _check_readable(options.files)
    counts_out = err if options.json else out
    render = json_line if options.json else alert_line
    progress = _TerminalProgress(err)

    def emit(detection: Detection) -> None:
        # JSON: every record the worker would write; for a reader: each
        # group once, when it closes, with its count.
        if detection.written if options.json else detection.closes_group:
            progress.clear()
            print(render(detection), file=out, flush=True)

    def note(text: str) -> None:
        progress.clear()
        print(f"note: {text}", file=err, flush=True)

    total = FileReport("total")
    for path in options.files:
        on_progress = progress.start(path.name)
        report = check_file(
            path, rules, options.grace_ms, options.depth, emit, on_progress, note,
            window_ms=options.window_ms,
        )  # fmt: skip
        progress.clear()
        total.add(report)
        print("\n".join(summary_lines(report, f"== {path}")), file=counts_out, flush=True)
    title = f"== total: {len(options.files)} file(s), {len(rules)} rule(s)"
    print("\n".join(summary_lines(total, title)), file=counts_out, flush=True)


def _usage(prog: str) -> str:
    return f"usage: {prog} test FILE... [--rules PATH] [--grace SECONDS] [--depth N] [--json]"


def main(argv: Sequence[str] | None = None, prog: str = "rules") -> int:
    """``rules test FILE...``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage(prog), file=sys.stderr)
        print(
            "\n  test    run the rules over recordings offline; see 'test --help'", file=sys.stderr
        )
        return 0 if args else 2
    if args[0] != "test":
        print(f"{prog}: unknown subcommand {args[0]!r}; {_usage(prog)}", file=sys.stderr)
        return 2
    test_prog = f"{prog} test"
    try:
        run(parse_options(args[1:], test_prog), sys.stdout, sys.stderr)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except (UsageError, RecordingError) as exc:
        print(f"{test_prog}: {exc}", file=sys.stderr)
        return 2
    return 0
