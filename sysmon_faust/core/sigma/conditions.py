"""A parsed Sigma condition as one predicate.

pySigma's ``SigmaCondition.parse()`` resolves a condition — identifiers,
``1 of selection_*``, ``all of them``, parentheses, ``and``/``or``/``not`` —
into a tree of :class:`~sigma.conditions.ConditionAND`/``OR``/``NOT`` over
leaves that test one field (``ConditionFieldEqualsValueExpression``) or any
field (``ConditionValueExpression``, a keyword). :func:`compile_condition`
turns the tree into nested closures (:mod:`.values` for the leaves); a rule
with several conditions matches when one does (Sigma specification, "Condition").

:mod:`.index` reads the same tree for what every match holds.
"""

from __future__ import annotations

from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    SigmaCIDRExpression,
    SigmaExpansion,
    SigmaNumber,
)

from sysmon_faust.core.sigma.values import (
    EXACT,
    Fields,
    Test,
    Unsupported,
    any_network_test,
    any_number_test,
    any_text_test,
    field_test,
    keyword_test,
    string_shape,
)


def compile_condition(node: Any) -> Test:
    """A parsed condition tree as ``test(original, lowered) -> bool``.

    Raises :class:`Unsupported` for a leaf that cannot be evaluated.
    """
    if isinstance(node, ConditionAND):
        return _all_of([compile_condition(arg) for arg in node.args])
    if isinstance(node, ConditionOR):
        return any_of(_merged_or(node.args))
    if isinstance(node, ConditionNOT):
        test = compile_condition(node.args[0])
        return lambda original, low: not test(original, low)
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return field_test(node.field, node.value)
    if isinstance(node, ConditionValueExpression):
        return keyword_test(node.value)
    raise Unsupported(f"a condition of type {type(node).__name__}")


def _merged_or(args: list[Any]) -> list[Test]:
    """The tests of an ``or``: the plain string and number values of one field as one
    test per field (a list of 100 ports is one set lookup, not 100 number parses)."""
    by_field: dict[str, list[tuple[str, str]]] = {}
    numbers: dict[str, list[SigmaNumber]] = {}
    networks: dict[str, list[SigmaCIDRExpression]] = {}
    rest: list[Any] = []
    for arg in args:
        if isinstance(arg, ConditionFieldEqualsValueExpression):
            if isinstance(arg.value, SigmaCIDRExpression):
                networks.setdefault(arg.field, []).append(arg.value)
                continue
            values = arg.value.values if isinstance(arg.value, SigmaExpansion) else [arg.value]
            shapes = [string_shape(value) for value in values]
            if all(
                shape is not None or type(value) is SigmaNumber
                for shape, value in zip(shapes, values, strict=True)
            ):
                by_field.setdefault(arg.field, []).extend(s for s in shapes if s is not None)
                numbers.setdefault(arg.field, []).extend(
                    value for value in values if type(value) is SigmaNumber
                )
                continue
        rest.append(arg)
    merged = [any_text_test(name, shapes) for name, shapes in by_field.items() if shapes]
    merged += [any_number_test(name, values) for name, values in numbers.items() if values]
    merged += [any_network_test(name, values) for name, values in networks.items()]
    return merged + [compile_condition(arg) for arg in rest]


# An ``and``/``or`` as a loop: measured (bench/rules.py), all()/any() over a
# generator cost a SigmaHQ process creation ~30 % more of its ~90 µs of rule
# tests (parts of two or three written out as one expression gained nothing more).


def _all_of(tests: list[Test]) -> Test:
    """Holds when every one of ``tests`` does (in order, stopping at the first that fails)."""
    if len(tests) == 1:
        return tests[0]

    def every(original: Fields, low: Fields) -> bool:
        for test in tests:  # noqa: SIM110 - a loop: all() over a generator is slower
            if not test(original, low):
                return False
        return True

    return every


def any_of(tests: list[Test]) -> Test:
    """Holds when one of ``tests`` does (an ``or``; several conditions of one rule)."""
    if len(tests) == 1:
        return tests[0]

    def one(original: Fields, low: Fields) -> bool:
        for test in tests:  # noqa: SIM110 - a loop: any() over a generator is slower
            if test(original, low):
                return True
        return False

    return one


def required_event_ids(node: Any) -> frozenset[int] | None:
    """The Sysmon event ids a match needs (from its ``EventID`` tests); None: any.

    ``service: sysmon`` rules name their EventID in the condition; this
    files them under those ids only instead of under all thirty.
    """
    if isinstance(node, ConditionAND):
        found: frozenset[int] | None = None
        for arg in node.args:
            ids = required_event_ids(arg)
            if ids is not None:
                found = ids if found is None else found & ids
        return found
    if isinstance(node, ConditionOR):
        union: set[int] = set()
        for arg in node.args:
            ids = required_event_ids(arg)
            if ids is None:
                return None
            union |= ids
        return frozenset(union)
    if isinstance(node, ConditionFieldEqualsValueExpression) and node.field == "EventID":
        value = node.value
        if isinstance(value, SigmaNumber) and isinstance(value.number, int):
            return frozenset((value.number,))
        shape = string_shape(value)
        if shape is not None and shape[0] == EXACT and shape[1].isdigit():
            return frozenset((int(shape[1]),))
    return None


__all__ = ["Fields", "any_of", "compile_condition", "required_event_ids"]
