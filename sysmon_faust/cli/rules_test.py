"""``python -m sysmon_faust rules test FILE...``: what the detection rules would fire on recordings.

The analyst's loop for writing a rule: edit the rules file, run this over a
few recordings, read the alerts. No broker and no worker: each recording goes
through the pipeline's own pieces — :func:`sysmon_faust.cli.recordings.read_records`
(exactly what ``replay`` would load), :func:`sysmon_faust.core.normalize.normalize`,
and the worker's own join engine with its grace, retention, ancestry, rules
and alert groups (:class:`sysmon_faust.core.join.local.LocalJoin`) — and every
alert is the ``sysmon-alerts`` record the worker would write.

Each file is joined on its own (the state starts empty for each file; the
files are read one after another), as one partition whose stream time is the
greatest event time read so far; at the end of a file every connect still
waiting is unmatched and every alert group closes. How that differs from the
streaming worker (:mod:`sysmon_faust.core.join.local`): the worker spreads
processes over partitions, each with its own stream time that also moves
with the wall clock; its ancestry also holds what it read before; and
``detected_at`` here is the time of this run.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, NoReturn, TextIO

import orjson

from sysmon_faust import engine_limits
from sysmon_faust.cli.recordings import OnNote, RecordingError, kind, read_records
from sysmon_faust.core import alert_groups
from sysmon_faust.core.join.engine import ALERTS, ENRICHED, JOINED, UNMATCHED, Output
from sysmon_faust.core.join.local import LocalJoin
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
)
from sysmon_faust.core.shapes import LOOKED_FOR
from sysmon_faust.core.sigma import ruleset
from sysmon_faust.core.sigma.ruleset import RuleLoadError, RuleSet, SigmaRule
from sysmon_faust.settings import Settings, SettingsError, rule_path

#: The worker's defaults; the environment's settings are read, as the
#: worker's are, by sysmon_faust.settings (which builds no app).
DEFAULT_GRACE_S: Final = int(Settings.join_grace)
DEFAULT_DEPTH: Final = Settings.ancestry_depth
DEFAULT_WINDOW_S: Final = int(Settings.alert_window)
MAX_WINDOW_S: Final = 7 * 86400  # as SYSMON_ALERT_WINDOW allows
MAX_GRACE_S: Final = 7 * 86400  # as SYSMON_JOIN_GRACE allows
MAX_DEPTH: Final = 64

_RULES_HINT: Final = "point --rules / SYSMON_RULES at Sigma rule files or folders"
_PROGRESS_EVERY: Final = 5000  # events between two progress updates on a terminal


# --- one recording ----------------------------------------------------------------


@dataclass
class FileReport:
    """What one recording gave."""

    path: str
    events: int = 0
    #: Sysmon events of any id, invalid ones aside (the "Sysmon" column of
    #: ../shared/datasets/README.md).
    sysmon: int = 0
    #: Sysmon 1, 3 and 5, and the other ids some rule is about: what the join handles.
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
    #: sysmon-enriched records, by Sysmon event id, and those without their process.
    enriched: Counter[int] = field(default_factory=Counter)
    enriched_unmatched: int = 0

    def add(self, other: FileReport) -> None:
        """Add ``other``'s counts to these (for the total)."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unmatched.update(other.unmatched)
        self.alerts.update(other.alerts)
        self.alert_groups.update(other.alert_groups)
        self.enriched.update(other.enriched)
        self.enriched_unmatched += other.enriched_unmatched


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
    rule: SigmaRule
    alert: Row
    written: bool = True
    closes_group: bool = True


OnDetection = Callable[[Detection], None]
#: Called with each sysmon-enriched record the worker would write.
OnEnriched = Callable[[Row], None]
OnProgress = Callable[[int], None]


def check_file(
    path: Path,
    rules: RuleSet,
    grace_ms: int,
    depth: int,
    on_detection: OnDetection,
    on_progress: OnProgress | None = None,
    on_note: OnNote | None = None,
    *,
    window_ms: int,
    enrich_events: frozenset[int] = frozenset(),
    on_enriched: OnEnriched | None = None,
    settings: Settings | None = None,
) -> FileReport:
    """Run one recording through normalization and the worker's join engine with ``rules``.

    Calls ``on_detection`` for each alert record as the worker would make it
    (grouped within ``window_ms``; 0: one per match), and for the final state
    of each group of one match (which the worker does not write);
    ``on_enriched`` for each ``sysmon-enriched`` record of the ids in
    ``enrich_events``. The engine's other lifetimes and limits (caps, the
    table's retention and TTL, DNS answers, activity summaries) are those of
    ``settings`` (None: the defaults), as a worker's (:mod:`sysmon_faust.engine_limits`).
    Raises :class:`sysmon_faust.cli.recordings.RecordingError` when the file cannot be read.
    """
    report = FileReport(str(path))
    chosen = settings or Settings()
    lifetimes = engine_limits.lifetimes(chosen)
    join = LocalJoin(
        rules,
        replace(lifetimes, grace=replace(lifetimes.grace, grace_ms=grace_ms)),
        replace(
            engine_limits.limits(chosen), ancestry_depth=depth, alert_window_ms=window_ms,
            enrich_events=enrich_events,
        ),
    )  # fmt: skip
    by_id = {rule.rule_id: rule for rule in rules.rules}
    # As the worker's intake (sysmon_faust.stream.detections): the events of
    # other ids are mapped when enriched, or when a rule may want them.
    other_event_ids, wanted = rules.intake_filter(enrich_events)

    def settle(made: list[Output]) -> None:
        _settle(report, made, by_id, on_detection, on_enriched)

    for raw in read_records(path, on_note):
        report.events += 1
        if on_progress is not None and report.events % _PROGRESS_EVERY == 0:
            on_progress(report.events)
        outcome = normalize(raw, other_event_ids, wanted)
        if isinstance(outcome, Invalid):
            report.invalid += 1
        elif isinstance(outcome, Filtered):
            report.filtered += 1
            report.no_shape += outcome.reason == NOT_WINDOWS_EVENT
            if outcome.event_id is not None:  # a Sysmon event of an id the pipeline drops
                report.sysmon += 1
        else:
            _count_event(report, outcome)
            settle(join.feed(outcome))
    settle(join.finish())
    report.alerts.update(join.engine.stats.alerts_by_rule)
    return report


def _count_event(report: FileReport, event: NormalizedEvent) -> None:
    report.sysmon += 1
    report.handled += 1
    report.creates += event.event_id == PROCESS_CREATE
    report.connects += event.event_id == NETWORK_CONNECT


def _settle(
    report: FileReport,
    made: list[Output],
    rules: Mapping[str, SigmaRule],
    on_detection: OnDetection,
    on_enriched: OnEnriched | None = None,
) -> None:
    """Count what an event (or the end of the file) made; hand out the alert records."""
    for output in made:
        if output.topic == JOINED:
            report.joined += 1
        elif output.topic == UNMATCHED:
            report.unmatched[output.row["unmatched_reason"]] += 1
        elif output.topic == ENRICHED:
            report.enriched[output.row["event_id"]] += 1
            report.enriched_unmatched += output.row["unmatched_reason"] is not None
            if on_enriched is not None:
                on_enriched(output.row)
        else:
            assert output.topic == ALERTS, output.topic
            alert = output.row
            closes = alert["alert_group"]["state"] == alert_groups.CLOSED
            report.alert_groups[alert["rule_id"]] += closes
            on_detection(Detection(report.path, rules[alert["rule_id"]], alert, output.written,
                                   closes))  # fmt: skip


# --- output ------------------------------------------------------------------------


def alert_line(detection: Detection) -> str:
    """One alert for a reader: file, rule (title, author), when, where, which process, on what,
    its ancestry. The author is shown as the Detection Rule License asks."""
    alert = detection.alert
    event = alert["event"]
    rule = detection.rule
    ancestors = [
        file_name(ancestor.get("process_path")) or "?"
        for ancestor in event.get("process_ancestry") or []
    ]
    on_what = (
        _destinations(alert)
        if alert.get("event_id", NETWORK_CONNECT) == NETWORK_CONNECT
        else _target(event)
    )
    return "  ".join(
        (
            Path(detection.file).name,
            f"{rule.title} ({rule.rule_id}, by {rule.author or 'unknown'})",
            f"{rule.attack_technique or '-'} {rule.level}",
            event.get("event_date_creation") or "?",
            event.get("host_name") or "?",
            f"{event.get('process_name') or '?'} {event.get('process_guid')} -> {on_what}",
            "ancestry: " + (" < ".join(ancestors) or "-"),
        )
    )


#: What an event other than a connect was about, for the alert line: its first of these.
_TARGETS: Final = (
    "TargetObject", "TargetFilename", "ImageLoaded", "TargetImage", "QueryName", "PipeName",
    "CommandLine", "Destination", "Device",
)  # fmt: skip


def _target(event: Row) -> str:
    data = event.get("event_data") or {}
    for name in _TARGETS:
        if data.get(name):
            return f"{name} {data[name]}"
    return event.get("process_command_line") or event.get("process_path") or "?"


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
            "severity": detection.rule.level,
            "process_guid": detection.alert["event"].get("process_guid"),
            "alert": detection.alert,
        }
    ).decode()


def summary_lines(
    report: FileReport, title: str, names: Mapping[str, str] | None = None
) -> list[str]:
    """A file's (or the total's) counts, a few indented lines under ``title``.

    ``names``: rule id → what to call it (its title); the id otherwise.
    """
    names = names or {}
    reasons = ", ".join(f"{reason} {count}" for reason, count in report.unmatched.most_common())
    rules = "; ".join(
        f"{names.get(rule_id, rule_id)}: {count}" for rule_id, count in report.alerts.most_common()
    )
    return [
        title,
        f"  events {report.events}: Sysmon {report.sysmon} (to the join: {report.handled}), "
        f"filtered {report.filtered}, invalid {report.invalid}",
        f"  creations {report.creates}; connects {report.connects}: joined {report.joined}, "
        f"unmatched {report.unmatched.total()}" + (f" ({reasons})" if reasons else ""),
        f"  alerts: {report.alerts.total()} matches in {report.alert_groups.total()} group(s)"
        + (f": {rules}" if rules else ""),
        *_enriched_lines(report),
        *(
            [f"  {report.no_shape} record(s) of no Windows event shape: {LOOKED_FOR}"]
            if report.no_shape
            else []
        ),
    ]


def _enriched_lines(report: FileReport) -> list[str]:
    if not report.enriched:
        return []
    by_id = ", ".join(f"Sysmon {event_id}: {n}" for event_id, n in sorted(report.enriched.items()))
    return [
        f"  enriched: {report.enriched.total()} ({by_id}), "
        f"{report.enriched_unmatched} without their process"
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
expire); ancestry is built from the creations read so far, and no join waits
for an ancestor's link. One partition: a Sysmon 8/10's target is looked up in
place. The rest is the worker's, from the same SYSMON_* variables: the grace
buffer's limits, the table's retention after ProcessTerminate and its TTL,
DNS answers (dst_query_name) and activity summaries.
"""

_EPILOG = """\
output: one line per alert (file, rule, ATT&CK technique and severity, event
time, host, process and GUID -> destination, ancestry nearest first), then per
file the counts (events, joins, unmatched by reason, alerts by rule) and a total.
With --json stdout holds only JSON lines, one per alert
({"file", "rule_id", "attack_technique", "severity", "process_guid", "alert"}
where "alert" is the sysmon-alerts record); the counts go to stderr.
With --enriched stdout holds the sysmon-enriched records instead, one JSON
line each (every event of SYSMON_ENRICH_EVENTS with its process's creation
fields and ancestry, or its unmatched_reason).

Rules are Sigma (--rules, as many as needed: files and folders); a rule
that cannot be evaluated is refused with a note on stderr and the others run.

exit status: 0 when it ran (whether or not a rule fired); 2 for a missing
rules path, a missing or unreadable input file, or bad options.
"""


@dataclass(frozen=True, slots=True)
class Options:
    files: list[Path]
    rules: tuple[Path, ...]
    grace_ms: int
    depth: int
    json: bool
    window_ms: int = int(Settings.alert_window * 1000)
    #: Print the sysmon-enriched records (JSON lines) instead of the alerts.
    enriched: bool = False
    enrich_events: frozenset[int] = Settings.enrich_events
    #: The rest of the engine's lifetimes and limits (the environment's SYSMON_* variables).
    settings: Settings = field(default_factory=Settings)


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
        "--rules", type=rule_path, metavar="PATH", action="append",
        help="Sigma rule file or folder, repeatable; `default`: the shipped rules (default: "
        "SYSMON_RULES if set, else the shipped rules)",
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
    parser.add_argument(
        "--enriched", action="store_true",
        help="JSON lines on stdout, one per record the worker would write to sysmon-enriched "
        "(the event ids of SYSMON_ENRICH_EVENTS, default all that name a process), instead "
        "of the alerts; counts on stderr",
    )  # fmt: skip
    return parser


def parse_options(argv: Sequence[str], prog: str) -> Options:
    """The options of ``rules test``; raises :class:`UsageError` for bad ones."""
    args = _parser(prog).parse_args(argv)
    try:
        settings = Settings.from_env()  # the defaults: what a worker here would use
    except SettingsError as error:
        raise UsageError(f"bad setting: {error}") from None
    rules = tuple(args.rules) if args.rules else settings.rules_paths
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
    return Options(args.files, rules, grace_s * 1000, depth, args.json, window_s * 1000,
                   args.enriched, settings.enrich_events, settings)  # fmt: skip


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


def load_rules(paths: Sequence[Path], err: TextIO) -> RuleSet:
    """The rules of ``paths``, a note on ``err`` per refused one; raises :class:`UsageError`."""
    try:
        rules = ruleset.load(paths)
    except RuleLoadError as exc:
        raise UsageError(f"{exc}; {_RULES_HINT}") from None
    for refused in rules.refused:
        print(f"note: Sigma rule refused: {refused.line()}", file=err, flush=True)
    return rules


def run(options: Options, out: TextIO, err: TextIO) -> None:
    """Check every file, printing alerts and counts; raises RecordingError/UsageError."""
    rules = load_rules(options.rules, err)
    _check_readable(options.files)
    counts_out = err if options.json or options.enriched else out
    render = json_line if options.json else alert_line
    progress = _TerminalProgress(err)

    def emit(detection: Detection) -> None:
        # JSON: every record the worker would write; for a reader: each
        # group once, when it closes, with its count.
        if options.enriched:
            return
        if detection.written if options.json else detection.closes_group:
            progress.clear()
            print(render(detection), file=out, flush=True)

    def emit_enriched(record: Row) -> None:
        progress.clear()
        print(orjson.dumps(record).decode(), file=out, flush=True)

    def note(text: str) -> None:
        progress.clear()
        print(f"note: {text}", file=err, flush=True)

    names = {rule.rule_id: rule.title for rule in rules.rules}
    total = FileReport("total")
    for path in options.files:
        on_progress = progress.start(path.name)
        report = check_file(
            path, rules, options.grace_ms, options.depth, emit, on_progress, note,
            window_ms=options.window_ms, enrich_events=options.enrich_events,
            on_enriched=emit_enriched if options.enriched else None, settings=options.settings,
        )  # fmt: skip
        progress.clear()
        total.add(report)
        print("\n".join(summary_lines(report, f"== {path}", names)), file=counts_out, flush=True)
    title = f"== total: {len(options.files)} file(s), {len(rules)} rule(s)"
    print("\n".join(summary_lines(total, title, names)), file=counts_out, flush=True)


def _usage(prog: str) -> str:
    return (
        f"usage: {prog} test FILE... [--rules PATH]... [--grace SECONDS] [--depth N] "
        "[--json | --enriched]"
        f"\n       {prog} check PATH... [--list]"
    )


def main(argv: Sequence[str] | None = None, prog: str = "rules") -> int:
    """``rules test FILE...``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage(prog), file=sys.stderr)
        print(
            "\n  test    run the rules over recordings offline; see 'test --help'"
            "\n  check   which Sigma rules load, by category, and why the others do not",
            file=sys.stderr,
        )
        return 0 if args else 2
    if args[0] == "check":
        from sysmon_faust.cli import rules_check

        return rules_check.main(args[1:], f"{prog} check")
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
