"""One field of an event tested against one pySigma value (modifiers already applied).

pySigma turns a detection item's value and modifiers into typed values:
``contains`` into a :class:`~sigma.types.SigmaString` with wildcards,
``base64offset``/``windash`` into a :class:`~sigma.types.SigmaExpansion` of
alternatives, ``re`` into :class:`~sigma.types.SigmaRegularExpression`, and so
on. :func:`field_test` compiles one of them into a predicate over an event's
fields (:mod:`.fields`): ``test(original, lowered) -> bool``.

Semantics (Sigma specification 2.0, "Value matching"; where it leaves room,
the choice is the one SIEM backends make and is written here):

* strings match the whole value, ``*``/``?`` as wildcards, case-insensitively
  (compared on the event's lower-cased copy) unless ``cased``;
* ``re`` searches (unanchored, Python's :mod:`re`), case-sensitively unless
  ``|i``; ``m``/``s`` as the flags say;
* a missing field matches only ``null`` (which an empty string matches too)
  and ``exists: false``; nothing else matches an absent value, so ``not``
  of a test on a missing field holds;
* numbers match the text of the number or its value (``0x1410`` is 5136:
  Sysmon writes GrantedAccess in hex); ``gt``/``gte``/``lt``/``lte`` compare
  values, never text;
* ``cidr`` parses the value as an address (``[::1]`` too); IPv4 only in IPv4
  networks, IPv6 in IPv6 ones, except that an IPv4-mapped IPv6 address
  (``::ffff:10.1.2.3``) is also the IPv4 address it carries;
* ``fieldref`` compares two fields of the event, ignoring case;
* a list-valued field (``AncestorImage``) matches when one element does;
* a keyword (a value with no field) matches when one of the event's own
  fields contains it (the "full log message" of the specification is the
  event, not the context its process adds).

Raises :class:`Unsupported` for what cannot be evaluated on one event
(``expand`` placeholders left unexpanded, query expressions, timestamp parts).
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable
from typing import Any, Final

import ahocorasick
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

from sysmon_faust.core.sigma import fields

#: An event's fields as :mod:`.fields` gives them: the original values and a
#: lower-cased copy (made once per event, shared by every rule).
Fields = dict[str, Any]
Test = Callable[[Fields, Fields], bool]
TextTest = Callable[[str], bool]


class Unsupported(ValueError):
    """A rule needs what one event cannot answer; the message says what."""


_COMPARE: Final = {
    CompareOperators.LT: operator.lt,
    CompareOperators.LTE: operator.le,
    CompareOperators.GT: operator.gt,
    CompareOperators.GTE: operator.ge,
}
_REGEX_FLAGS: Final = {
    SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
    SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
    SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
}


def regex_flags(value: SigmaRegularExpression) -> int:
    """The ``re`` flags of a Sigma regular expression's ``i``/``m``/``s`` modifiers."""
    flags = 0
    for flag in value.flags:
        flags |= _REGEX_FLAGS[flag]
    return flags


def text_test(value: SigmaString) -> TextTest:
    """A string value as a test of one text (lower-cased already, unless ``cased``).

    The four shapes rules mostly use — exact, ``*x``, ``x*``, ``*x*`` — are
    plain string operations; anything else is one compiled regular expression.
    """
    cased = isinstance(value, SigmaCasedString)
    parts = [p if cased or not isinstance(p, str) else p.lower() for p in value.s]
    if any(isinstance(p, Placeholder) for p in parts):
        raise Unsupported("a placeholder (|expand) without a value")
    many = SpecialChars.WILDCARD_MULTI
    plain = [isinstance(p, str) for p in parts]
    if not parts:
        return lambda text: text == ""
    if plain == [True]:
        literal = parts[0]
        return lambda text: text == literal
    if len(parts) == 2 and parts[0] is many and plain[1]:
        return _endswith(str(parts[1]))
    if len(parts) == 2 and parts[1] is many and plain[0]:
        return _startswith(str(parts[0]))
    if len(parts) == 3 and parts[0] is many and parts[2] is many and plain[1]:
        literal = str(parts[1])
        return lambda text: literal in text
    pattern = "".join(
        re.escape(p) if isinstance(p, str) else (".*" if p is many else ".") for p in parts
    )
    fullmatch = re.compile(pattern, re.DOTALL).fullmatch
    return lambda text: fullmatch(text) is not None


#: The shapes :func:`string_shape` tells apart.
EXACT, PREFIX, SUFFIX, CONTAINS = "exact", "prefix", "suffix", "contains"


def string_shape(value: Any) -> tuple[str, str] | None:
    """(shape, lower-case literal) of a case-insensitive string value of one of the four
    plain shapes (exact, ``x*``, ``*x``, ``*x*``); None for anything else."""
    if not isinstance(value, SigmaString) or isinstance(value, SigmaCasedString):
        return None
    parts, many = value.s, SpecialChars.WILDCARD_MULTI
    if len(parts) == 1 and isinstance(parts[0], str):
        return EXACT, parts[0].lower()
    if len(parts) == 2 and parts[0] is many and isinstance(parts[1], str):
        return SUFFIX, parts[1].lower()
    if len(parts) == 2 and parts[1] is many and isinstance(parts[0], str):
        return PREFIX, parts[0].lower()
    if len(parts) == 3 and parts[0] is many and parts[2] is many and isinstance(parts[1], str):
        return CONTAINS, parts[1].lower()
    return None


def any_text_test(name: str, shapes: list[tuple[str, str]]) -> Test:
    """One test for ``name`` matching any of many plain-shaped values (an OR of a list).

    Measured (``make bench``, rules row): SigmaHQ's rules list up to hundreds
    of values per field; trying them one closure at a time was most of the
    corpus's cost. Here a list is one set lookup, one ``startswith``/
    ``endswith`` of a tuple and one compiled alternation, all in C.
    """
    exact = frozenset(literal for shape, literal in shapes if shape == EXACT)
    prefixes = tuple(literal for shape, literal in shapes if shape == PREFIX)
    suffixes = tuple(literal for shape, literal in shapes if shape == SUFFIX)
    inner = [literal for shape, literal in shapes if shape == CONTAINS]
    contains = _contains_any(inner)

    def test(text: str) -> bool:
        return (
            text in exact
            or (bool(prefixes) and text.startswith(prefixes))
            or (bool(suffixes) and text.endswith(suffixes))
            or (contains is not None and contains(text))
        )

    return _on_text(name, test, lowered=True)


def any_number_test(name: str, values: list[SigmaNumber]) -> Test:
    """One test for ``name`` equal to any of many numbers (an OR of a list): its text is
    one of theirs, or its value (decimal or hex, :func:`number`) is.

    Measured (``bench/rules.py``): SigmaHQ's port lists, tried one number at a
    time, cost a connect 30 µs in one rule; one set lookup is well under 1 µs.
    """
    texts = frozenset(str(value.number).lower() for value in values)
    wanted = frozenset(float(value.number) for value in values)
    return _on_text(name, lambda v: v in texts or number(v) in wanted, lowered=True)


def _contains_any(literals: list[str]) -> TextTest | None:
    """Whether a text contains one of ``literals``: ``in`` for a few, Aho-Corasick for many
    (one pass; a regular-expression alternation of 50 literals took ~7 µs per text)."""
    if not literals:
        return None
    if not any(literal.isascii() for literal in literals):
        # Emoji, homoglyphs...: never in ASCII text, and str.isascii() is O(1)
        # (a flag of the string); most command lines and paths are ASCII.
        # Measured: 22 µs per command line for one SigmaHQ emoji list, ~0.1 µs now.
        others = _contains_any_of(literals)
        return lambda text: not text.isascii() and others(text)
    return _contains_any_of(literals)


def _contains_any_of(literals: list[str]) -> TextTest:
    if len(literals) <= 4:
        return lambda text: any(literal in text for literal in literals)
    automaton = ahocorasick.Automaton()
    for literal in literals:
        automaton.add_word(literal, literal)
    automaton.make_automaton()
    iterate = automaton.iter
    return lambda text: next(iterate(text), None) is not None


def _endswith(literal: str) -> TextTest:
    return lambda text: text.endswith(literal)


def _startswith(literal: str) -> TextTest:
    return lambda text: text.startswith(literal)


def _on_text(name: str, test: TextTest, lowered: bool) -> Test:
    """``test`` on the field's text, or on any element of a list-valued field."""

    def check(original: Fields, low: Fields) -> bool:
        value = (low if lowered else original).get(name)
        if type(value) is str:
            return test(value)
        if type(value) is list:
            return any(test(element) for element in value if element is not None)
        return False

    return check


#: A number as Sysmon writes one: decimal (``443``, ``-1``, ``0.5``) or hex (``0x1410``).
_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)|0[xX][0-9a-fA-F]+")


def number(value: Any) -> float | None:
    """A field's value as a number (``"10"``, ``"0x1410"``), or None — not for
    ``"infinity"``, ``"nan"``, ``"1_000"`` or ``"1e3"``, which Python's float()
    takes but no Sysmon field holds as a number."""
    if type(value) is str and _NUMBER.fullmatch(value):
        try:
            return float(int(value, 16)) if value[:2] in ("0x", "0X") else float(value)
        except OverflowError:  # a hex number beyond a float: none a Sysmon field holds
            return None
    return None


def field_test(name: str, value: Any) -> Test:
    """``name`` (a field) tested against ``value`` (a pySigma value).

    Raises :class:`Unsupported` for a value one event cannot answer.
    """
    if isinstance(value, SigmaExpansion):
        alternatives = [field_test(name, v) for v in value.values]
        return lambda original, low: any(test(original, low) for test in alternatives)
    if isinstance(value, SigmaString):
        return _on_text(name, text_test(value), not isinstance(value, SigmaCasedString))
    if isinstance(value, SigmaNull):
        return lambda original, low: original.get(name) in (None, "", [])
    if isinstance(value, SigmaExists):
        wanted = bool(value.exists)
        return lambda original, low: bool(_texts(original.get(name))) is wanted
    if isinstance(value, SigmaBool):
        text = "true" if value.boolean else "false"
        return _on_text(name, text.__eq__, lowered=True)
    if isinstance(value, SigmaNumber):
        wanted_number, text = float(value.number), str(value.number).lower()
        return _on_text(name, lambda v: v == text or number(v) == wanted_number, lowered=True)
    if isinstance(value, SigmaCompareExpression):
        compare = _COMPARE.get(value.op)
        if compare is None:
            raise Unsupported(f"comparison {value.op.name}")
        bound = float(value.number.number)
        return _on_text(
            name, lambda v: (n := number(v)) is not None and compare(n, bound), lowered=True
        )
    if isinstance(value, SigmaRegularExpression):
        search = re.compile(str(value.regexp), regex_flags(value)).search
        return _on_text(name, lambda v: search(v) is not None, lowered=False)
    if isinstance(value, SigmaCIDRExpression):
        return any_network_test(name, [value])
    if isinstance(value, SigmaFieldReference):
        return _field_reference(name, value)
    raise Unsupported(f"a value of type {type(value).__name__}")


def any_network_test(name: str, values: list[SigmaCIDRExpression]) -> Test:
    """One test for ``name`` being an address in any of ``values``' networks (``cidr``;
    a list is an OR). The address is parsed once for the whole list.

    Measured (``bench/rules.py``): a list of 8 networks parsed the address 8
    times, 9 µs per connect in one SigmaHQ rule.
    """
    networks = [value.network for value in values]

    def test(text: str) -> bool:
        try:
            address = ipaddress.ip_address(text.strip("[]"))
        except ValueError:
            return False
        # ::ffff:10.1.2.3 is the IPv4 address 10.1.2.3 on a dual-stack socket.
        mapped = getattr(address, "ipv4_mapped", None)
        return any(
            address in network or (mapped is not None and mapped in network) for network in networks
        )

    return _on_text(name, test, lowered=False)


def _field_reference(name: str, reference: SigmaFieldReference) -> Test:
    other, starts, ends = reference.field, reference.starts_with, reference.ends_with

    def one(mine: str, theirs: str) -> bool:
        if starts and ends:
            return theirs in mine
        if starts:
            return mine.startswith(theirs)
        if ends:
            return mine.endswith(theirs)
        return mine == theirs

    def test(original: Fields, low: Fields) -> bool:
        # A list (the ancestry) on either side: one element of it compares.
        mine, theirs = _texts(low.get(name)), _texts(low.get(other))
        return any(one(m, t) for m in mine for t in theirs)

    return test


def _texts(value: Any) -> list[str]:
    """A field's text value(s): one, a list's elements, or none."""
    if type(value) is str:
        return [value]
    if type(value) is list:
        return [v for v in value if v is not None]
    return []


def keyword_test(value: Any) -> Test:
    """A value with no field (a keyword): holds when one of the event's own fields
    contains it (wildcards inside it kept).

    The Sigma specification applies keywords to "the full log message"; the
    message here is the event's own fields, never the context its process
    adds (:func:`sysmon_faust.core.sigma.fields.context_only`), so a keyword
    rule sees the same whether the process was known yet or not. Raises
    :class:`Unsupported` for a value that is not text or a regular expression.
    """
    if isinstance(value, SigmaExpansion):
        alternatives = [keyword_test(v) for v in value.values]
        return lambda original, low: any(test(original, low) for test in alternatives)
    if isinstance(value, SigmaString):
        if not value.startswith(SpecialChars.WILDCARD_MULTI):
            value = SpecialChars.WILDCARD_MULTI + value
        if not value.endswith(SpecialChars.WILDCARD_MULTI):
            value = value + SpecialChars.WILDCARD_MULTI
        test = text_test(value)
        lowered = not isinstance(value, SigmaCasedString)
        return lambda original, low: any(test(v) for v in _own_texts(low if lowered else original))
    if isinstance(value, SigmaRegularExpression):
        search = re.compile(str(value.regexp), regex_flags(value)).search
        return lambda original, low: any(search(v) is not None for v in _own_texts(original))
    raise Unsupported(f"a keyword of type {type(value).__name__}")


def _own_texts(values: Fields) -> list[str]:
    """The text values of the event's own fields (not those its process's context added)."""
    try:
        context = fields.context_only(int(values["EventID"]))
    except (KeyError, ValueError):
        context = fields.CONTEXT_NAMES
    return [v for name, v in values.items() if type(v) is str and name not in context]
