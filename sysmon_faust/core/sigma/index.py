"""Which rules of an event id may match an event, without trying each: what every match holds.

Each rule is reduced to one :class:`Requirement` read off its condition
tree: keys of which every matching event holds at least one —

* ``contains``: a lower-case piece of text in one field's value (the longest
  plain part of a string value, or plain text every match of a regular
  expression holds; a keyword's in any field), found by an Aho-Corasick scan
  (pyahocorasick) of that field's lower-case value;
* ``equals``: a field's whole value, lower-case (``DestinationPort`` ``4444``,
  ``Image`` ``c:\\windows\\system32\\cmd.exe``; a number also by its value, as
  :func:`~.values.field_test` compares numbers), found by one dict lookup per
  indexed field;
* ``names``: the last part of a path a value ends with (``Image|endswith:
  '\\cmd.exe'``: ``cmd.exe`` after the value's last backslash), one dict
  lookup per indexed field.

``or`` needs every part's keys; ``and`` needs one part's, and the strongest
part is kept (:func:`strength`). A rule whose tree gives no requirement (a
``not`` alone, a regular expression without plain text, ``null``) is tried on
every event of its id. Only candidates are tested (:meth:`RuleIndex.candidates`): a requirement
never decides a match, so the index may hand out too many, never too few.

Measured (``/tmp`` scripts over ``bench/rules.py``'s events, SigmaHQ's
corpus, every event type; 2026-12-01): with substrings alone, five
network_connection rules (``Initiated: 'true'`` and a list of ports) were
tried on every connect, their only text being ``true``; with the two other
kinds, candidate rules per event 3.41 → 2.13, their tests 2.58 → 1.76 µs
per input event, finding them 2.30 → 2.46 µs (docs/rules.md).
"""

from __future__ import annotations

import functools
import re
import re._constants as _re_constants
import re._parser as _re_parser
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import ahocorasick
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    SigmaBool,
    SigmaCasedString,
    SigmaExpansion,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
)

from sysmon_faust.core.sigma.fields import lowered, searchable_text
from sysmon_faust.core.sigma.values import (
    EXACT,
    SUFFIX,
    Fields,
    number,
    regex_flags,
    string_shape,
)

#: A piece of text shorter than this is in too many events to narrow anything down.
MIN_LITERAL: Final = 3

#: Sysmon fields of a handful of values (schema 4.90: ``true``/``false``, a
#: protocol, a registry operation, an integrity level), or where one value
#: is most events' (``Microsoft Corporation``, ``NT AUTHORITY\SYSTEM``,
#: ``0x3e7``). A whole value of one of them narrows less than any piece of
#: text, so it is kept only when a rule's condition offers nothing else.
LOW_CARDINALITY: Final = frozenset({
    "EventID", "Initiated", "SourceIsIpv6", "DestinationIsIpv6", "Protocol", "EventType",
    "IntegrityLevel", "Signed", "SignatureStatus", "TerminalSessionId", "Archived",
    "IsExecutable", "State", "Operation", "QueryStatus", "RuleName", "Company", "Product",
    "Signature", "User", "ParentUser", "SourceUser", "TargetUser", "LogonId",
    "CurrentDirectory",
})  # fmt: skip


@functools.cache
def _folded_letters() -> frozenset[str]:
    """ASCII letters that a character outside ASCII matches in a case-insensitive regular
    expression without lower-casing to the letter: asked of ``re`` over every code
    point (~0.2 s, once; Python 3.11: U+0131 and U+0130 for ``i``, U+017F for ``s``)."""
    others = "".join(map(chr, range(0x80, 0xD800))) + "".join(map(chr, range(0xE000, 0x110000)))
    return frozenset(
        letter
        for other in set(re.findall("(?i)[a-z]", others))
        for letter in string.ascii_lowercase
        if re.fullmatch(f"(?i){letter}", other) and other.lower() != letter
    )


_REPEATS: Final = (
    _re_constants.MAX_REPEAT, _re_constants.MIN_REPEAT, _re_constants.POSSESSIVE_REPEAT,
)  # fmt: skip

#: The ``equals`` key of a number, beside its text: ``0x1bb`` and ``443`` are one value.
_NUMBER_KEY: Final = "\x00number\x00"


def number_key(value: float) -> str:
    """The key under which a number's value is indexed (its text is indexed as itself)."""
    # + 0.0: -0.0 is 0.0, as the rules' tests compare numbers (==).
    return _NUMBER_KEY + repr(float(value) + 0.0)


@dataclass(frozen=True)
class Requirement:
    """Keys of which every matching event holds one (see the module docstring).

    ``contains`` holds (field, lower-case piece of text) pairs, the field None
    for a keyword's; ``equals`` holds (field, lower-case value) pairs; ``numbers`` names the
    fields some of whose keys are numbers (:func:`number_key`); ``names``
    holds (field, lower-case last part of a path) pairs: what follows the
    value's last backslash.
    """

    contains: frozenset[tuple[str | None, str]] = frozenset()
    equals: frozenset[tuple[str, str]] = frozenset()
    numbers: frozenset[str] = frozenset()
    names: frozenset[tuple[str, str]] = frozenset()

    def __or__(self, other: Requirement) -> Requirement:
        return Requirement(
            self.contains | other.contains, self.equals | other.equals,
            self.numbers | other.numbers, self.names | other.names,
        )  # fmt: skip


def strength(requirement: Requirement) -> tuple[int, int, int]:
    """How much a requirement narrows (greater: fewer events hold one of its keys).

    Its weakest key decides: a whole value of a field of many values, or the
    last part of a path (rank 2), beats a piece of text (rank 1, longer beats
    shorter), which beats a whole value of a field of few (rank 0,
    :data:`LOW_CARDINALITY`); then fewer keys.
    """
    ranks = [(1, len(literal)) for _, literal in requirement.contains]
    ranks += [
        (0 if name in LOW_CARDINALITY else 2, len(value)) for name, value in requirement.equals
    ]
    ranks += [(2, len(last)) for _, last in requirement.names]
    rank, length = min(ranks)
    return rank, length, -len(ranks)


def requirement(
    node: Any, unknown: frozenset[str] = frozenset(), *, equals: bool = True
) -> Requirement | None:
    """What every event matching ``node`` (a parsed condition tree) holds; None: nothing known.

    Tests of the fields in ``unknown`` (and keywords, when there are such
    fields) give nothing: what the event alone says about a rule that uses
    its process's context. ``equals`` False: pieces of text only (what a scan
    of an event's text can check, :meth:`RuleSet.wanted
    <sysmon_faust.core.sigma.ruleset.RuleSet.wanted>`).
    """
    if isinstance(node, ConditionAND):
        best: Requirement | None = None
        for arg in node.args:
            found = requirement(arg, unknown, equals=equals)
            if found is not None and (best is None or strength(found) > strength(best)):
                best = found
        return best
    if isinstance(node, ConditionOR):
        union = Requirement()
        for arg in node.args:
            found = requirement(arg, unknown, equals=equals)
            if found is None:
                return None
            union |= found
        return union
    if isinstance(node, ConditionFieldEqualsValueExpression) and node.field not in unknown:
        whole = (
            _equals(node.field, node.value) or _names(node.field, node.value) if equals else None
        )
        return whole if whole is not None else _contains(node.field, node.value)
    if isinstance(node, ConditionValueExpression) and not unknown:
        return _contains(None, node.value)
    return None


def _equals(name: str, value: Any) -> Requirement | None:
    """A field's whole value (every alternative of an expansion), or None."""
    values = value.values if isinstance(value, SigmaExpansion) else [value]
    keys: set[tuple[str, str]] = set()
    numbers = False
    for one in values:
        if type(one) is SigmaNumber:
            keys.add((name, str(one.number).lower()))
            keys.add((name, number_key(one.number)))
            numbers = True
        elif type(one) is SigmaBool:
            keys.add((name, "true" if one.boolean else "false"))
        else:
            # A cased string is left out: its lower case is no guarantee of the
            # lower-cased value (lower() of a whole is not its parts' lower()).
            shape = string_shape(one)
            if shape is None or shape[0] != EXACT:
                return None
            keys.add((name, shape[1]))
    if not keys:
        return None
    numbered = frozenset((name,)) if numbers else frozenset()
    return Requirement(equals=frozenset(keys), numbers=numbered)


def _names(name: str, value: Any) -> Requirement | None:
    """The last part of a path a value ends with (``|endswith: '\\cmd.exe'``: ``cmd.exe``,
    every alternative of an expansion), or None.

    A value that ends with ``\\x`` (``x`` holding no backslash) has ``x`` after its
    last backslash: one dict lookup, not a scan of the event's text for ``\\x``.
    """
    values = value.values if isinstance(value, SigmaExpansion) else [value]
    keys: set[tuple[str, str]] = set()
    for one in values:
        shape = string_shape(one)
        if shape is None or shape[0] != SUFFIX:
            return None
        _, backslash, last = shape[1].rpartition("\\")
        if not backslash or not last:
            return None
        keys.add((name, last))
    return Requirement(names=frozenset(keys)) if keys else None


def _regex_pieces(value: SigmaRegularExpression) -> frozenset[str] | None:
    """Pieces of text, lower-case, of which every match of a regular expression holds one
    (the longest run of plain ASCII characters every match holds, one per alternative of
    an alternation), or None.

    Read off the tree ``re``'s own parser builds (``re._parser``, CPython's
    ``sre_parse``: the tree ``re.compile`` compiles, so no second reading of
    the syntax); any doubt gives None. A piece of a case-insensitive
    expression holds none of the letters that characters outside ASCII match
    there without lower-casing to them (dotless U+0131 and dotted U+0130 match
    ``i``, the long U+017F matches ``s``): the index looks for pieces in the lower-cased value.
    """
    flags = regex_flags(value)
    try:
        tree = _re_parser.parse(str(value.regexp), flags)
    except Exception:  # any failure of a private parser: no requirement
        return None
    ignore_case = bool(tree.state.flags & re.IGNORECASE)
    found = _sequence_pieces(list(tree), ignore_case)
    return None if found is None else frozenset(piece.lower() for piece in found)


def _sequence_pieces(items: list[Any], ignore_case: bool) -> frozenset[str] | None:
    """The strongest set of pieces a sequence of parsed items requires, or None."""
    options: list[frozenset[str]] = []
    run: list[str] = []

    def end_run() -> None:
        if run:
            options.append(frozenset(("".join(run),)))
            run.clear()

    for op, argument in items:
        if (
            op is _re_constants.LITERAL
            and argument < 128
            and not (ignore_case and chr(argument).lower() in _folded_letters())
        ):
            run.append(chr(argument))
            continue
        end_run()
        found: frozenset[str] | None = None
        if op is _re_constants.SUBPATTERN:
            _group, add_flags, _del_flags, inner = argument
            found = _sequence_pieces(list(inner), ignore_case or bool(add_flags & re.IGNORECASE))
        elif op is _re_constants.BRANCH:
            alternatives = [_sequence_pieces(list(one), ignore_case) for one in argument[1]]
            if alternatives and all(one is not None for one in alternatives):
                found = frozenset().union(*(one for one in alternatives if one is not None))
        elif op in _REPEATS and argument[0] >= 1:  # (pySigma's RE2 check refuses possessive)
            found = _sequence_pieces(list(argument[2]), ignore_case)
        if found is not None:
            options.append(found)
    end_run()
    options = [one for one in options if min(len(piece) for piece in one) >= MIN_LITERAL]
    if not options:
        return None
    return max(options, key=lambda one: (min(len(piece) for piece in one), -len(one)))


def _contains(name: str | None, value: Any) -> Requirement | None:
    """The longest plain part of a string value (of every alternative) in field ``name``
    (None: a keyword, any field), or None."""
    if isinstance(value, SigmaExpansion):
        union = Requirement()
        for alternative in value.values:
            found = _contains(name, alternative)
            if found is None:
                return None
            union |= found
        return union
    if isinstance(value, SigmaRegularExpression):
        pieces = _regex_pieces(value)
        if pieces is None:
            return None
        return Requirement(contains=frozenset((name, piece) for piece in pieces))
    # cased strings are left out: lower() of a text is not always the
    # concatenation of its parts' lower() (Greek final sigma).
    if isinstance(value, SigmaString) and not isinstance(value, SigmaCasedString):
        plain = [part.lower() for part in value.s if isinstance(part, str)]
        longest = max(plain, key=len, default="")
        # A character outside ASCII (a homoglyph, an emoji, U+202E) is rare in
        # Sysmon's fields on its own: SigmaHQ lists them one by one.
        if len(longest) >= MIN_LITERAL or not longest.isascii():
            return Requirement(contains=frozenset(((name, longest),)))
    return None


#: Values a field's memo keeps (:class:`RuleIndex`): then it starts over.
MEMO_ENTRIES: Final = 1024
#: Longer values are scanned each time, never kept.
MEMO_LONGEST: Final = 256

_NO_RULES: Final[tuple[int, ...]] = ()


@dataclass
class _Field:
    """One indexed field of an event id: its keys and the memo of its values."""

    name: str
    #: The pieces of text of this field's tests, in one automaton.
    automaton: Any = None
    equals: dict[str, list[int]] = field(default_factory=dict)
    names: dict[str, list[int]] = field(default_factory=dict)
    numbers: bool = False
    #: A value, as the event holds it → the rules its keys reach, sorted.
    memo: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def rules_of(self, value: str) -> tuple[int, ...]:
        """The rules one value of the field reaches (memoized; the keys are looked up
        in its lower case)."""
        kept = len(value) <= MEMO_LONGEST
        if kept and (found := self.memo.get(value)) is not None:
            return found
        low = value.lower()
        reached: set[int] = set()
        if self.automaton is not None:
            for _end, rules in self.automaton.iter(low):
                reached.update(rules)
        if (rules := self.equals.get(low)) is not None:
            reached.update(rules)
        if self.names and (rules := self.names.get(low.rpartition("\\")[2])) is not None:
            reached.update(rules)
        if (
            self.numbers
            and (as_number := number(low)) is not None
            and (rules := self.equals.get(number_key(as_number))) is not None
        ):
            reached.update(rules)
        found = tuple(sorted(reached)) if reached else _NO_RULES
        if kept:
            if len(self.memo) >= MEMO_ENTRIES:
                self.memo.clear()
            self.memo[value] = found
        return found


@dataclass
class RuleIndex:
    """The rules of one event id by their requirements (rule numbers: the caller's).

    Keys are kept per field: a field's value is looked up in its own
    automaton and dicts only, and what one value reaches is remembered
    (:data:`MEMO_ENTRIES` values of at most :data:`MEMO_LONGEST` characters per
    field, then the memo starts over) — Sysmon repeats the same images,
    parents, ports and DLLs all day. Measured (2026-12-01, SigmaHQ's corpus,
    ``make bench``'s events; docs/rules.md): finding candidates in ``LocalJoin``
    5.3 → 2.0 µs per input event; the worker's CPU 125.0 → 117.5 µs per event
    (medians of four rounds alternating with the scan of all of an event's text).
    """

    #: Rules with no requirement: tried on every event.
    always: list[int] = field(default_factory=list)
    #: Keywords' pieces of text (of no field): scanned over all of the event's text.
    _keywords: Any = None
    _by_name: dict[str, _Field] = field(default_factory=dict)
    _fields: tuple[_Field, ...] = ()

    def add(self, rule: int, required: Requirement | None) -> None:
        """File rule number ``rule`` under ``required`` (None: tried on every event)."""
        if required is None:
            self.always.append(rule)
            return
        for name, literal in required.contains:
            if name is None:
                if self._keywords is None:
                    self._keywords = ahocorasick.Automaton()
                _file_word(self._keywords, literal, rule)
            else:
                one = self._field(name)
                if one.automaton is None:
                    one.automaton = ahocorasick.Automaton()
                _file_word(one.automaton, literal, rule)
        for name, value in required.equals:
            _file(self._field(name).equals, value, rule)
        for name, last in required.names:
            _file(self._field(name).names, last, rule)
        for name in required.numbers:
            self._field(name).numbers = True

    def _field(self, name: str) -> _Field:
        found = self._by_name.get(name)
        if found is None:
            found = self._by_name[name] = _Field(name)
        return found

    def finish(self) -> None:
        """Build the automata once every rule is added."""
        for one in self._by_name.values():
            if one.automaton is not None:
                one.automaton.make_automaton()
        if self._keywords is not None:
            self._keywords.make_automaton()
        self._fields = tuple(self._by_name[name] for name in sorted(self._by_name))

    def candidates(self, view: Fields, text: str | None = None) -> Sequence[int]:
        """The rules that may match an event, in rule order: ``view`` its fields (as
        written or lower-case: each value is looked up in its lower case); ``text`` all
        of them in one, lower-case (:func:`~.fields.searchable_text`, made here when a
        keyword needs it and not given)."""
        hits: list[tuple[int, ...] | list[int]] = []
        for one in self._fields:
            value = view.get(one.name)
            if value is None:
                continue
            if type(value) is list:
                for element in value:
                    if type(element) is str and (found := one.rules_of(element)):
                        hits.append(found)
            elif type(value) is str and (found := one.rules_of(value)):
                hits.append(found)
        if self._keywords is not None:
            if text is None:
                text = searchable_text(lowered(view))
            hits.extend(rules for _end, rules in self._keywords.iter(text))
        if not hits:
            return self.always
        if len(hits) == 1 and not self.always:
            return hits[0]  # sorted (rules_of), or filed in rule order (add() is called so)
        chosen = set(self.always)
        for rules in hits:
            chosen.update(rules)
        return sorted(chosen)


def _file(table: dict[str, list[int]], key: str, rule: int) -> None:
    rules = table.setdefault(key, [])
    if rule not in rules:
        rules.append(rule)


def _file_word(automaton: Any, literal: str, rule: int) -> None:
    found = automaton.get(literal, None)
    if found is None:
        automaton.add_word(literal, [rule])
    elif rule not in found:
        found.append(rule)
