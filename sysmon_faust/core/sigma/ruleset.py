"""Sigma rules loaded, compiled once, and indexed by event id and what any match holds.

:func:`load` reads rule files and folders (SigmaHQ's layout: any depth,
``.yml``/``.yaml``) with pySigma, keeps the rules whose logsource is a Sysmon
event kind (:mod:`.logsource`), and compiles each (:mod:`.conditions`). A rule
that cannot be evaluated is *refused* — one line naming the file, the rule id
and why — and the others load. Rules of other logsources (Security,
PowerShell, ...) are *not for this pipeline*: counted, not refused.

:class:`RuleSet` answers "which rules match this event" without trying every
rule on every event: rules are grouped by Sysmon event id, and within a group
each rule is reached only when the event holds what any match of it holds
(:mod:`.index`: a piece of text, a field's whole value, the last part of a
path); the rules that give no such thing (a regular expression without plain text, a
``not``...) are tried on every event of their group. ``make bench`` has the
figures.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import ahocorasick
import yaml
from sigma.collection import SigmaCollection
from sigma.conditions import ConditionFieldEqualsValueExpression, ConditionValueExpression
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.modifiers import SigmaWideModifier, modifier_mapping
from sigma.rule import SigmaDetection, SigmaDetectionItem
from sigma.rule import SigmaRule as PySigmaRule
from sigma.types import SigmaFieldReference, SigmaRuleLocation

from sysmon_faust.core.normalize import FIELD_MAPS, OtherEventFilter
from sysmon_faust.core.sigma import conditions, fields, logsource
from sysmon_faust.core.sigma.index import Requirement, RuleIndex, requirement
from sysmon_faust.core.sigma.values import Fields, Test, Unsupported

# The Sigma specification (appendix "Modifiers") names UTF-16LE ``utf16le``
# and ``wide`` its alias; pySigma 2.0.1 knows only ``wide``. Its modifier table
# is the documented way to add one.
modifier_mapping.setdefault("utf16le", SigmaWideModifier)

_TECHNIQUE: Final = re.compile(r"^attack\.(t\d{4}(?:\.\d{3})?)$", re.IGNORECASE)


_NO_FIELDS: Final = frozenset({"EventID"})
_NONE: Final[frozenset[int]] = frozenset()


class RuleLoadError(ValueError):
    """A rules path that does not exist: the message says which."""


@dataclass(frozen=True, eq=False)
class SigmaRule:
    """A Sigma rule as the pipeline runs it: its metadata and its compiled condition."""

    rule_id: str
    title: str
    level: str
    status: str | None
    #: The first ``attack.tNNNN`` tag, upper-case (``T1047``), or None.
    attack_technique: str | None
    tags: tuple[str, ...]
    author: str | None
    references: tuple[str, ...]
    description: str | None
    #: The logsource: category (or ``service`` when it has none), product.
    category: str
    event_ids: tuple[int, ...]
    #: The file it came from.
    source: str
    #: Every field name its condition tests.
    fields: frozenset[str]
    test: Test = field(repr=False)
    #: Whether its condition has keywords (values of no field: any own field).
    keywords: bool = False
    #: What a matching event holds, for the index (None: any event may match).
    required: Requirement | None = field(repr=False, default=None)
    #: Lower-case strings of which a matching event contains one, per event
    #: id, from the tests of fields the process's context never fills for that
    #: id: what the event alone must contain for the rule to match with
    #: context (None: nothing known).
    own_literals: Mapping[int, frozenset[str] | None] = field(repr=False, default_factory=dict)

    def uses_context(self, event_id: int) -> bool:
        """Whether it names a field that events of ``event_id`` only get from their process."""
        return bool(self.fields & fields.context_only(event_id))

    def matches(self, view: Fields, low: Fields) -> bool:
        """Whether the event (:mod:`.fields`: its view and lower-case copy) matches."""
        return self.test(view, low)


@dataclass(frozen=True)
class Refused:
    """A rule that did not load: where, which, why."""

    source: str
    rule_id: str | None
    title: str | None
    category: str | None
    reason: str

    def line(self) -> str:
        """One line for logs and ``rules check``: file, rule id, why."""
        return f"{self.source}: rule {self.rule_id or '(no id)'}: {self.reason}"


@dataclass
class _Group:
    """The rules of one event id: their index, and what the rules that use context need."""

    index: RuleIndex = field(default_factory=RuleIndex)
    #: For the rules that use context: whether one may match whatever the
    #: event holds, else the literals the event itself must hold for one to.
    context_always: bool = False
    context_literals: set[str] = field(default_factory=set)
    context_automaton: Any = None


class RuleSet:
    """Loaded rules, indexed; :meth:`match` gives the rules an event matches."""

    def __init__(
        self,
        rules: Sequence[SigmaRule],
        refused: Sequence[Refused] = (),
        not_for_sysmon: int = 0,
    ) -> None:
        self.rules: tuple[SigmaRule, ...] = tuple(rules)
        self.refused: tuple[Refused, ...] = tuple(refused)
        #: Rules read whose logsource is not a Sysmon event kind.
        self.not_for_sysmon = not_for_sysmon
        self._groups: dict[int, _Group] = {}
        self._context: dict[int, bool] = {}
        #: Per event id, the indexes of the rules that use context there.
        self._uses_context: dict[int, set[int]] = {}
        self._fields: dict[int, frozenset[str] | None] = {}
        for index, rule in enumerate(self.rules):
            for event_id in rule.event_ids:
                group = self._groups.setdefault(event_id, _Group())
                named = self._fields.get(event_id, frozenset({"EventID"}))
                self._fields[event_id] = (
                    None if named is None or rule.keywords else named | rule.fields
                )
                if rule.uses_context(event_id):
                    self._context[event_id] = True
                    self._uses_context.setdefault(event_id, set()).add(index)
                    own = rule.own_literals.get(event_id)
                    if own is None:
                        group.context_always = True
                    else:
                        group.context_literals |= own
                group.index.add(index, rule.required)
        for group in self._groups.values():
            group.index.finish()
            if group.context_literals and not group.context_always:
                group.context_automaton = ahocorasick.Automaton()
                for literal in group.context_literals:
                    group.context_automaton.add_word(literal, literal)
                group.context_automaton.make_automaton()

    def __len__(self) -> int:
        return len(self.rules)

    def event_ids(self) -> frozenset[int]:
        """The Sysmon event ids some rule is about."""
        return frozenset(self._groups)

    def covers(self, event_id: int) -> bool:
        """Whether some rule is about ``event_id``."""
        return event_id in self._groups

    def fields_of(self, event_id: int) -> frozenset[str] | None:
        """The fields the rules of ``event_id`` test (``EventID`` too); None: every field
        (a rule has keywords). The view an event is matched on needs no other
        (:func:`sysmon_faust.core.sigma.fields.event_fields` ``only``)."""
        return self._fields.get(event_id, _NO_FIELDS)

    def needs_context(self, event_id: int) -> bool:
        """Whether a rule on ``event_id`` names a field only the event's process gives."""
        return self._context.get(event_id, False)

    def context_may_match(self, event_id: int, low: Fields) -> bool:
        """Whether a rule of ``event_id`` that uses context may match this event once its
        process's context is added (False: none can, whatever the process)."""
        group = self._groups.get(event_id)
        if group is None:
            return False
        return self._context_may_match(event_id, group, fields.searchable_text(low))

    def _context_may_match(self, event_id: int, group: _Group, text: str) -> bool:
        if not self._context.get(event_id, False):
            return False
        if group.context_always:
            return True
        return next(group.context_automaton.iter(text), None) is not None

    def wanted(self, event_id: int, view: Fields, low: Fields) -> bool:
        """Whether an event (its own fields, no context) is worth its process's join:
        a rule that uses context may match it once the context is added, or a rule
        on the event alone matches it (the alert then carries the process)."""
        group = self._groups.get(event_id)
        if group is None:
            return False
        # One scan for both questions: this runs on most of the input (make
        # bench, Sigma rows: ~60 % of the generated events are of other ids).
        text = fields.searchable_text(low)
        if self._context_may_match(event_id, group, text):
            return True
        uses = self._uses_context.get(event_id, _NONE)
        rules = self.rules
        return any(
            index not in uses and rules[index].test(view, low)
            for index in group.index.candidates(view, text)
        )

    def wanted_event_data(self, event_id: int, event_data: Mapping[str, Any]) -> bool:
        """:meth:`wanted` of an event of another id than 1/3/5 from its EventData alone: what
        the intake asks before it maps the event (``normalize(..., wants=)``)."""
        view = fields.event_fields(
            event_id, {fields.EVENT_DATA: event_data}, self.fields_of(event_id)
        )
        return self.wanted(event_id, view, fields.lowered(view))

    def intake_filter(
        self, enrich_events: frozenset[int]
    ) -> tuple[frozenset[int], OtherEventFilter]:
        """What the intake keeps of the Sysmon ids beyond 1/3/5: ``normalize``'s
        ``other_event_ids`` and ``wants`` — every event of an enriched id
        (``SYSMON_ENRICH_EVENTS``), and one of another id when a rule may want it
        (:meth:`wanted_event_data`). The worker's intake and ``rules test`` ask this."""
        other_event_ids = (self.event_ids() | enrich_events) - set(FIELD_MAPS)

        def wants(event_id: int, event_data: Mapping[str, Any]) -> bool:
            return event_id in enrich_events or self.wanted_event_data(event_id, event_data)

        return other_event_ids, wants

    def candidates(self, event_id: int, view: Fields) -> Sequence[int]:
        """Indexes of the rules that may match (all that can, in load order); ``view``
        as written or lower-case."""
        group = self._groups.get(event_id)
        if group is None:
            return []
        return group.index.candidates(view)

    def match(
        self, event_id: int, view: Fields, low: Fields | None = None, context: bool | None = None
    ) -> list[SigmaRule]:
        """The rules of ``event_id`` that ``view`` matches (``low``: its lower-case copy,
        :func:`~.fields.lowered`, made here when a rule is to be tried and not given).

        ``context``: only the rules that use process context (True), only those
        that do not (False), or all (None).
        """
        candidates = self.candidates(event_id, view)
        if not candidates:
            # Nor is the lower-case copy made: 44 % of make bench's matched events
            # reach no rule with SigmaHQ's corpus, and the copy cost ~1.2 µs per
            # input event when made for every one (LocalJoin, 2026-12-01).
            return []
        if low is None:
            low = fields.lowered(view)
        matched = []
        rules = self.rules
        if context is None:
            for index in candidates:
                if rules[index].test(view, low):
                    matched.append(rules[index])
            return matched
        uses = self._uses_context.get(event_id, _NONE)
        for index in candidates:
            if (index in uses) is context and rules[index].test(view, low):
                matched.append(rules[index])
        return matched

    def by_category(self) -> dict[str, tuple[int, int]]:
        """category → (loaded, refused)."""
        counts: dict[str, list[int]] = {}
        for rule in self.rules:
            counts.setdefault(rule.category, [0, 0])[0] += 1
        for refusal in self.refused:
            counts.setdefault(refusal.category or "(unknown)", [0, 0])[1] += 1
        return {category: (n[0], n[1]) for category, n in sorted(counts.items())}


# --- loading -----------------------------------------------------------------


def rule_files(paths: Iterable[Path | str]) -> Iterator[Path]:
    """Every ``.yml``/``.yaml`` under ``paths`` (files as given), sorted per folder.

    Raises :class:`RuleLoadError` for a path that does not exist.
    """
    for given in paths:
        path = Path(given)
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.suffix.lower() in (".yml", ".yaml") and p.is_file()
            )
        elif path.is_file():
            yield path
        else:
            raise RuleLoadError(f"rules path {path}: no such file or folder")


def load(paths: Iterable[Path | str]) -> RuleSet:
    """The Sigma rules of ``paths`` (files and folders), compiled and indexed.

    Raises :class:`RuleLoadError` when a path does not exist; a file that is
    not YAML, or a rule pySigma or this evaluator cannot take, is refused
    (:attr:`RuleSet.refused`) and the rest load.
    """
    return _collect(outcome for path in rule_files(paths) for outcome in _load_file(path))


def parse(text: str, source: str = "<text>") -> RuleSet:
    """The Sigma rules of one YAML text (one or several documents), as :func:`load` would."""
    return _collect(_parse_documents(text, source, None))


def _collect(outcomes: Iterable[SigmaRule | Refused | None]) -> RuleSet:
    rules: list[SigmaRule] = []
    refused: list[Refused] = []
    seen: dict[str, str] = {}
    not_for_sysmon = 0
    for outcome in outcomes:
        if outcome is None:
            not_for_sysmon += 1
        elif isinstance(outcome, Refused):
            refused.append(outcome)
        elif outcome.rule_id in seen:
            refused.append(
                dataclasses.replace(
                    _refusal(outcome), reason=f"duplicate id: {seen[outcome.rule_id]} has it too"
                )
            )
        else:
            seen[outcome.rule_id] = outcome.source
            rules.append(outcome)
    return RuleSet(rules, refused, not_for_sysmon)


def _load_file(path: Path) -> Iterator[SigmaRule | Refused | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        yield Refused(str(path), None, None, None, f"cannot read it: {_one_line(error)}")
        return
    yield from _parse_documents(text, str(path), path)


def _parse_documents(
    text: str, source: str, path: Path | None
) -> Iterator[SigmaRule | Refused | None]:
    try:
        documents = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as error:
        yield Refused(source, None, None, None, f"cannot read it as YAML: {_one_line(error)}")
        return
    if not all(isinstance(document, dict) for document in documents):
        yield Refused(source, None, None, None, "not a Sigma rule (a YAML mapping per document)")
        return
    try:
        collection = SigmaCollection.from_dicts(
            documents, collect_errors=True,
            source=SigmaRuleLocation(path) if path is not None else None,
            resolve_references=False,
        )  # fmt: skip
    except SigmaError as error:  # a collection-level error (action: global misuse...)
        yield Refused(source, None, None, None, _one_line(error))
        return
    for rule in collection:
        yield _compile(rule, source)


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader: 2,400 files in ~1 s


def _compile(rule: Any, source: str) -> SigmaRule | Refused | None:
    rule_id = str(rule.id) if getattr(rule, "id", None) else None
    title = getattr(rule, "title", None)
    if isinstance(rule, SigmaCorrelationRule):
        return Refused(source, rule_id, title, None,
                       "a correlation rule (over several events) is not evaluated")  # fmt: skip
    if not isinstance(rule, PySigmaRule):
        return Refused(source, rule_id, title, None, f"a {type(rule).__name__} is not evaluated")
    source_logsource = rule.logsource
    category = source_logsource.category or source_logsource.service
    event_ids = logsource.event_ids(
        source_logsource.product, source_logsource.category, source_logsource.service
    )
    if not event_ids:
        return None  # another logsource's rule: counted, never refused, even if broken
    if rule.errors:
        return Refused(source, rule_id, title, category, _one_line(rule.errors[0]))
    if rule_id is None:
        return Refused(source, None, title, category, "no id")
    try:
        if _negated_items(rule.detection.detections.values()):
            raise Unsupported("the neq modifier (pySigma 2.0 does not carry it into the condition)")
        trees = [condition.parse() for condition in rule.detection.parsed_condition]
        test = conditions.any_of([conditions.compile_condition(tree) for tree in trees])
    except (Unsupported, SigmaError, re.error) as error:
        # re.error: pySigma checks a regular expression with RE2, which takes
        # some Python's re does not (\pL, \Q...\E, \z): that rule is refused.
        return Refused(source, rule_id, title, category, _one_line(error))
    needed_ids = [conditions.required_event_ids(tree) for tree in trees]
    if all(ids is not None for ids in needed_ids):
        named = frozenset().union(*(ids for ids in needed_ids if ids is not None))
        event_ids = tuple(event_id for event_id in event_ids if event_id in named)
        if not event_ids:
            return Refused(source, rule_id, title, category,
                           "its EventID tests name no event of its logsource")  # fmt: skip
    required = _either(trees)
    # What the event itself must hold, per id: a field one id carries
    # (OriginalFileName in Sysmon 7) is context for another (Sysmon 3).
    own_literals = {
        event_id: _either_literals(trees, fields.context_only(event_id)) for event_id in event_ids
    }
    tags = tuple(str(tag) for tag in rule.tags)
    technique = next((m.group(1).upper() for tag in tags if (m := _TECHNIQUE.match(tag))), None)
    return SigmaRule(
        rule_id=rule_id,
        title=title or rule_id,
        level=rule.level.name.lower() if rule.level else "medium",
        status=rule.status.name.lower() if rule.status else None,
        attack_technique=technique,
        tags=tags,
        author=rule.author,
        references=tuple(rule.references or ()),
        description=rule.description,
        category=category or "sysmon",
        event_ids=event_ids,
        source=source,
        fields=frozenset(_field_names(trees)),
        test=test,
        keywords=_has_keywords(trees),
        required=required,
        own_literals=own_literals,
    )


def _either(
    trees: Sequence[Any], unknown: frozenset[str] = frozenset(), *, equals: bool = True
) -> Requirement | None:
    """What an event matching one of ``trees`` (a rule's conditions) holds: each tree's
    :func:`~.index.requirement` together; None: nothing known."""
    found: Requirement | None = Requirement()
    for tree in trees:
        one = requirement(tree, unknown, equals=equals)
        found = None if one is None or found is None else found | one
    return found


def _either_literals(trees: Sequence[Any], unknown: frozenset[str]) -> frozenset[str] | None:
    """The pieces of text of which an event matching one of ``trees`` holds one, not counting
    tests of the ``unknown`` fields; None: no such set."""
    found = _either(trees, unknown, equals=False)
    return None if found is None else frozenset(literal for _, literal in found.contains)


def _refusal(rule: SigmaRule) -> Refused:
    return Refused(rule.source, rule.rule_id, rule.title, rule.category, "")


def _negated_items(detections: Iterable[SigmaDetection]) -> bool:
    for detection in detections:
        for item in detection.detection_items:
            if isinstance(item, SigmaDetection):
                if _negated_items([item]):
                    return True
            elif isinstance(item, SigmaDetectionItem) and getattr(item, "negated", False):
                return True
    return False


def _field_names(trees: Iterable[Any]) -> Iterator[str]:
    for tree in trees:
        stack = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, ConditionFieldEqualsValueExpression):
                yield node.field
                if isinstance(node.value, SigmaFieldReference):
                    yield node.value.field
            stack.extend(getattr(node, "args", ()))


def _has_keywords(trees: Iterable[Any]) -> bool:
    for tree in trees:
        stack = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, ConditionValueExpression):
                return True
            stack.extend(getattr(node, "args", ()))
    return False


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
