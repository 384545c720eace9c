"""Detection rules as data: a small condition language, loaded from YAML or JSON.

Every enriched network connect (a ``sysmon-join`` row, the fields of
:class:`sysmon_faust.core.records.EnrichedNetworkConnect`) is checked against every
rule; each rule that holds raises one alert. The rules live in a file so that
analysts can add or tune detections without touching code; the package ships
:data:`DEFAULT_RULES_PATH`. A file looks like::

    version: 1                       # optional; 1 is the only version
    rules:
      - id: sysmon-wmi-child-network-connect    # ^[a-z0-9][a-z0-9._-]*$, unique
        name: Process under WmiPrvSE.exe made a network connection
        technique: T1047                         # ATT&CK id, T1234 or T1234.001
        severity: high                           # low | medium | high | critical
        description: optional free text
        when:                                    # one condition
          any_ancestor:
            field: process_path
            ends_with: '\\wmiprvse.exe'

A condition is a mapping of exactly one shape:

``all: [cond, ...]`` / ``any: [cond, ...]``
    Every / at least one of a non-empty list holds.
``not: cond``
    ``cond`` does not hold.
``any_ancestor: cond``
    ``cond`` holds for at least one entry of ``process_ancestry`` (parent,
    grandparent, ...); never when the ancestry is empty or missing. Inside it,
    fields are an ancestor's (``process_guid``, ``process_path``,
    ``process_command_line``), and ``any_ancestor`` cannot nest: the inner
    condition already applies to each ancestor.
``field: NAME`` plus one operator
    ``equals``, ``ends_with``, ``starts_with``, ``contains``, ``regex``
    (:func:`re.search`) or ``cidr``, whose value is a scalar or a non-empty list
    (the test holds if any one matches), and optionally ``case_sensitive``.

Semantics, chosen for Windows telemetry:

* Text comparisons ignore case unless ``case_sensitive: true``: Windows paths,
  image and host names are case-insensitive, and Sysmon reports the same
  binary as ``WmiPrvSE.exe`` on one host and ``WMIPRVSE.EXE`` on another.
* A missing or ``None`` field matches no operator, so ``not`` of a test on it
  holds. A rule never fires because a value is absent, only because one is.
* ``equals`` compares a field with values of its own type: ``dst_port`` with
  integers, ``network_connection_initiated`` with booleans, the other fields
  with text. A value of another type could never match, so it is refused when
  the rules load instead of silently never firing; ``ends_with``,
  ``starts_with``, ``contains``, ``regex`` and ``cidr`` apply to text fields.
* ``cidr`` parses the field as an IP address; a value that is not one never
  matches. An IPv4 address matches only IPv4 networks and an IPv6 address only
  IPv6 ones, except that an IPv4-mapped IPv6 address (``::ffff:10.1.2.3``) is
  also checked as the IPv4 address it stands for.

A rules file is validated completely when it loads: a mistake raises
:class:`RuleError` naming the file, the rule and the path of the field within
it (``when.all[1].regex``), so a bad file stops the worker at start instead
of silently detecting less. Each rule is then compiled once into a closure;
evaluation does no parsing, because it runs on every joined event.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Union, get_args, get_origin

import yaml

from sysmon_faust.core.ancestry import ANCESTOR_FIELDS, Row
from sysmon_faust.core.records import EnrichedNetworkConnect, field_types

#: The rules shipped with the package, used when no file is configured.
DEFAULT_RULES_PATH: Final[Path] = Path(__file__).with_name("default_rules.yaml")

#: A compiled condition, over an event or over one of its ancestors.
Predicate = Callable[[Row], bool]

_ID: Final = re.compile(r"[a-z0-9][a-z0-9._-]*")
_TECHNIQUE: Final = re.compile(r"T\d{4}(\.\d{3})?")
_SEVERITIES: Final = ("low", "medium", "high", "critical")
_REQUIRED_KEYS: Final = ("id", "name", "technique", "severity", "when")
_RULE_KEYS: Final = (*_REQUIRED_KEYS, "description")
_TOP_LEVEL_KEYS: Final = ("rules", "version")
_COMBINATORS: Final = ("all", "any", "not", "any_ancestor")
_OPERATORS: Final = ("equals", "ends_with", "starts_with", "contains", "regex", "cidr")
_FIELD_TEST_KEYS: Final = ("field", *_OPERATORS, "case_sensitive")
_ANCESTRY: Final = "process_ancestry"


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    rule_name: str
    attack_technique: str
    severity: str
    matches: Callable[[Row], bool]
    description: str | None = None


class RuleError(ValueError):
    """An invalid rules file: the message names the file, the rule and the field."""


def load_rules(path: Path | str | None = None) -> tuple[Rule, ...]:
    """The rules of a YAML or JSON file (``None``: :data:`DEFAULT_RULES_PATH`), compiled.

    ``.json`` files are read as JSON, anything else as YAML (a superset of JSON).
    """
    path = DEFAULT_RULES_PATH if path is None else Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RuleError(f"rules file {source}: cannot read it: {error}") from error
    if path.suffix.lower() == ".json":
        document = _parse_json(text, source)
    else:
        document = _parse_yaml(text, source)
    return parse_rules(document, source)


def parse_rules(document: object, source: str) -> tuple[Rule, ...]:
    """Validate and compile an already-parsed rules document; ``source`` names it in errors."""
    entries = _rule_entries(document, source)
    rules: list[Rule] = []
    positions: dict[str, int] = {}
    for position, spec in enumerate(entries, start=1):
        label = _rule_label(spec, position)
        try:
            rule = _compile_rule(spec)
            if rule.rule_id in positions:
                raise _Invalid("id", f"duplicate id: rule #{positions[rule.rule_id]} has it too")
        except _Invalid as invalid:
            where = f"{label}: {invalid.path}" if invalid.path else label
            raise RuleError(f"rules file {source}: {where}: {invalid.problem}") from None
        positions[rule.rule_id] = position
        rules.append(rule)
    return tuple(rules)


def alert_record(rule: Rule, enriched: Row, detected_at: str) -> Row:
    """The ``sysmon-alerts`` record of ``rule`` firing on ``enriched`` (a ``sysmon-join`` row)."""
    return {
        "rule_id": rule.rule_id,
        "rule_name": rule.rule_name,
        "attack_technique": rule.attack_technique,
        "severity": rule.severity,
        "detected_at": detected_at,
        "event": enriched,
    }


def matching_rules(event: Row, rules: Sequence[Rule]) -> list[Rule]:
    """The rules that fire on an enriched (``sysmon-join``) record."""
    return [rule for rule in rules if rule.matches(event)]


# --- reading files -----------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``, except that a key repeated in one mapping is an error.

    Plain YAML keeps the last of two ``ends_with:`` keys and drops the other
    without a word: a rule would silently test less than it says.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str, source: str) -> object:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as error:
        raise RuleError(f"rules file {source}: not valid YAML: {_yaml_problem(error)}") from error


def _yaml_problem(error: yaml.YAMLError) -> str:
    # One line, where and what: PyYAML's own text spans several lines and quotes the
    # document as "<unicode string>", which makes a poor log line.
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        context = f" ({error.context})" if error.context else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}{context}"
    return " ".join(str(error).split())


def _parse_json(text: str, source: str) -> object:
    try:
        return json.loads(text, object_pairs_hook=_json_object)
    except ValueError as error:
        raise RuleError(f"rules file {source}: not valid JSON: {error}") from error


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Same reason as _StrictLoader: json.loads keeps the last duplicate silently.
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise ValueError(f"duplicate key {key!r}")
        mapping[key] = value
    return mapping


# --- validating the document -------------------------------------------------


class _Invalid(Exception):
    """A problem at ``path`` within one rule ("" for the whole rule); parse_rules adds the file
    and the rule."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def _rule_entries(document: object, source: str) -> list[object]:
    def invalid(path: str, problem: str) -> RuleError:
        return RuleError(f"rules file {source}: {path}: {problem}")

    if not isinstance(document, dict):
        raise invalid("top level", f"expected a mapping with a 'rules' list, got {_kind(document)}")
    unknown = [key for key in document if key not in _TOP_LEVEL_KEYS]
    if unknown:
        raise invalid(str(unknown[0]), f"unknown key; allowed: {_listing(_TOP_LEVEL_KEYS)}")
    if "version" in document and not _is_exactly(document["version"], 1):
        raise invalid("version", f"unsupported version {document['version']!r}; allowed: 1")
    if "rules" not in document:
        raise invalid("rules", "missing: the file's rules, a list")
    entries = document["rules"]
    if not isinstance(entries, list):
        raise invalid("rules", f"expected a list of rules, got {_kind(entries)}")
    return entries


def _rule_label(spec: object, position: int) -> str:
    rule_id = spec.get("id") if isinstance(spec, dict) else None
    if isinstance(rule_id, str) and _ID.fullmatch(rule_id):
        return f"rule {rule_id!r}"
    return f"rule #{position}"


def _compile_rule(spec: object) -> Rule:
    if not isinstance(spec, dict):
        raise _Invalid("", f"expected a rule (a mapping), got {_kind(spec)}")
    for key in spec:
        if key not in _RULE_KEYS:
            raise _Invalid(str(key), f"unknown key; allowed: {_listing(_RULE_KEYS)}")
    for key in _REQUIRED_KEYS:
        if key not in spec:
            raise _Invalid(key, f"missing; every rule has {_listing(_REQUIRED_KEYS)}")
    rule_id = _matching_text(spec, "id", _ID, "lower-case letters, digits, '.', '_', '-'")
    technique = _matching_text(
        spec, "technique", _TECHNIQUE, "an ATT&CK id like T1047 or T1021.006"
    )
    severity = spec["severity"]
    if severity not in _SEVERITIES:
        raise _Invalid(
            "severity", f"{severity!r} is not a severity; allowed: {_listing(_SEVERITIES)}"
        )
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise _Invalid("description", f"expected text, got {_kind(description)}")
    return Rule(
        rule_id=rule_id,
        rule_name=_text(spec, "name"),
        attack_technique=technique,
        severity=severity,
        matches=_condition(spec["when"], "when", _EVENT_SCOPE),
        description=description,
    )


def _text(spec: dict[Any, Any], key: str) -> str:
    value = spec[key]
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(key, f"expected non-empty text, got {_kind(value)}")
    return value


def _matching_text(spec: dict[Any, Any], key: str, pattern: re.Pattern[str], allowed: str) -> str:
    value = _text(spec, key)
    if not pattern.fullmatch(value):
        raise _Invalid(key, f"{value!r} is not valid; allowed: {allowed}")
    return value


# --- conditions --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scope:
    """What a condition is evaluated on: the event, or one ancestor inside any_ancestor."""

    #: Field name → the type of its values (str, int or bool).
    fields: dict[str, type]
    within_ancestry: bool


def _value_type(annotation: object) -> type | None:
    """The type a field's values compare as: ``str | None`` → str; None if not a scalar."""
    if get_origin(annotation) in (Union, types.UnionType):
        # The None is what "missing" means, not a type to compare with.
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _value_type(options[0]) if len(options) == 1 else None
    return annotation if annotation in _TYPE_NAMES else None


def _event_fields() -> dict[str, type]:
    # From the model, so a field added to EnrichedNetworkConnect can be tested at once;
    # fields that are not text, integers or booleans (process_ancestry) are not field tests.
    fields = {}
    for name, annotation in field_types(EnrichedNetworkConnect).items():
        value_type = _value_type(annotation)
        if value_type is not None and name != _ANCESTRY:
            fields[name] = value_type
    return fields


_TYPE_NAMES: Final[dict[type, str]] = {str: "text", int: "integers", bool: "true or false"}
_EVENT_SCOPE: Final = _Scope(fields=_event_fields(), within_ancestry=False)
_ANCESTOR_SCOPE: Final = _Scope(fields=dict.fromkeys(ANCESTOR_FIELDS, str), within_ancestry=True)


def _condition(spec: object, path: str, scope: _Scope) -> Predicate:
    if not isinstance(spec, dict) or not spec:
        raise _Invalid(path, f"expected a condition (a mapping), got {_kind(spec)}; {_SHAPES}")
    if any(key in _FIELD_TEST_KEYS for key in spec):
        return _field_test(spec, path, scope)
    if len(spec) > 1 or next(iter(spec)) not in _COMBINATORS:
        raise _Invalid(path, f"unexpected keys: {_listing(spec)}; {_SHAPES}")
    ((shape, operand),) = spec.items()
    inner = f"{path}.{shape}"
    if shape == "not":
        return _negation(_condition(operand, inner, scope))
    if shape == "any_ancestor":
        if scope.within_ancestry:
            raise _Invalid(
                inner, "any_ancestor cannot nest: the inside already tests each ancestor"
            )
        return _any_ancestor(_condition(operand, inner, _ANCESTOR_SCOPE))
    if not isinstance(operand, list) or not operand:
        raise _Invalid(inner, f"expected a non-empty list of conditions, got {_kind(operand)}")
    parts = [_condition(part, f"{inner}[{i}]", scope) for i, part in enumerate(operand)]
    return _all_of(parts) if shape == "all" else _any_of(parts)


_SHAPES: Final = (
    "a condition is one of all: [...], any: [...], not: {...}, any_ancestor: {...}, "
    f"or a field test (field: NAME and one of {', '.join(_OPERATORS)})"
)


def _negation(inner: Predicate) -> Predicate:
    def holds(row: Row) -> bool:
        return not inner(row)

    return holds


# Plain loops rather than all()/any() over a generator in the three closures below
# (hence the noqa): they run many times per event, and a generator costs more than the
# tests inside; with the default rules, evaluation takes a third of the time this way.


def _all_of(parts: list[Predicate]) -> Predicate:
    def holds(row: Row) -> bool:
        for part in parts:  # noqa: SIM110
            if not part(row):
                return False
        return True

    return holds


def _any_of(parts: list[Predicate]) -> Predicate:
    def holds(row: Row) -> bool:
        for part in parts:  # noqa: SIM110
            if part(row):
                return True
        return False

    return holds


def _any_ancestor(inner: Predicate) -> Predicate:
    def holds(event: Row) -> bool:
        for ancestor in event.get(_ANCESTRY) or ():
            if isinstance(ancestor, dict) and inner(ancestor):
                return True
        return False

    return holds


# --- field tests -------------------------------------------------------------


def _field_test(spec: dict[Any, Any], path: str, scope: _Scope) -> Predicate:
    for key in spec:
        if key not in _FIELD_TEST_KEYS:
            raise _Invalid(f"{path}.{key}", f"unknown key; allowed: {_listing(_FIELD_TEST_KEYS)}")
    field = _field_name(spec, path, scope)
    operators = [key for key in spec if key in _OPERATORS]
    if len(operators) != 1:
        got = _listing(operators) if operators else "none"
        raise _Invalid(
            path,
            f"a field test has exactly one operator, got {got}; allowed: {_listing(_OPERATORS)}",
        )
    (operator,) = operators
    case_sensitive = spec.get("case_sensitive", False)
    if not isinstance(case_sensitive, bool):
        raise _Invalid(
            f"{path}.case_sensitive", f"expected true or false, got {_kind(case_sensitive)}"
        )
    where = f"{path}.{operator}"
    field_type = scope.fields[field]
    if operator != "equals" and field_type is not str:
        raise _Invalid(
            where, f"{operator} applies to text; {field} holds {_TYPE_NAMES[field_type]}"
        )
    values = _operand(spec[operator], where, field_type if operator == "equals" else str, field)
    return _OPERATOR_TESTS[operator](field, values, case_sensitive, where)


def _field_name(spec: dict[Any, Any], path: str, scope: _Scope) -> str:
    where = f"{path}.field"
    if "field" not in spec:
        raise _Invalid(where, "missing: a field test names the field it tests")
    field = spec["field"]
    if isinstance(field, str) and field in scope.fields:
        return field
    if field == _ANCESTRY:
        raise _Invalid(where, "process_ancestry is tested with any_ancestor: {...}")
    if scope.within_ancestry:
        hint = "inside any_ancestor, the fields are an ancestor's: "
    else:
        hint = "allowed: "
    raise _Invalid(where, f"unknown field {field!r}; {hint}{_listing(scope.fields)}")


def _operand(raw: object, where: str, value_type: type, field: str) -> list[Any]:
    """An operator's values: a scalar or a non-empty list of them, each of ``value_type``."""
    if isinstance(raw, list):
        if not raw:
            raise _Invalid(where, "empty list: give one value or a non-empty list")
        items = [(f"{where}[{i}]", item) for i, item in enumerate(raw)]
    else:
        items = [(where, raw)]
    for item_path, item in items:
        # type() rather than isinstance(): True is an int to Python, not to a rule.
        if type(item) is not value_type:
            raise _Invalid(
                item_path,
                f"expected {_TYPE_NAMES[value_type]} (the values of {field}), got {_kind(item)}",
            )
    return [item for _, item in items]


# Each operator compiles to a predicate over the row: its values are folded to lower case
# (casefold) once here, the field's value once per test. isinstance(value, str) is also
# what makes None, and a missing field, match nothing.


def _equals(field: str, values: list[Any], case_sensitive: bool, where: str) -> Predicate:
    wanted_type = type(values[0])
    if wanted_type is not str:
        scalars = frozenset(values)
        # type(), not isinstance(): True == 1 and True in {1} to Python, not to a rule.
        return lambda row: type(value := row.get(field)) is wanted_type and value in scalars
    if case_sensitive:
        texts = frozenset(values)
        return lambda row: isinstance(value := row.get(field), str) and value in texts
    folded = frozenset(text.casefold() for text in values)
    return lambda row: isinstance(value := row.get(field), str) and value.casefold() in folded


def _affix_test(method: Callable[[str, tuple[str, ...]], bool]) -> Callable[..., Predicate]:
    """``ends_with`` / ``starts_with``: ``str.endswith`` or ``str.startswith`` over the values."""

    def build(field: str, values: list[str], case_sensitive: bool, where: str) -> Predicate:
        if case_sensitive:
            affixes = tuple(values)
            return lambda row: isinstance(value := row.get(field), str) and method(value, affixes)
        folded = tuple(affix.casefold() for affix in values)
        return lambda row: (
            isinstance(value := row.get(field), str) and method(value.casefold(), folded)
        )

    return build


_ends_with = _affix_test(str.endswith)
_starts_with = _affix_test(str.startswith)


def _contains(field: str, values: list[str], case_sensitive: bool, where: str) -> Predicate:
    needles = tuple(values if case_sensitive else (needle.casefold() for needle in values))

    def holds(row: Row) -> bool:
        value = row.get(field)
        if not isinstance(value, str):
            return False
        haystack = value if case_sensitive else value.casefold()
        return any(needle in haystack for needle in needles)

    return holds


def _regex(field: str, values: list[str], case_sensitive: bool, where: str) -> Predicate:
    flags = 0 if case_sensitive else re.IGNORECASE
    patterns = []
    for i, pattern in enumerate(values):
        try:
            patterns.append(re.compile(pattern, flags))
        except re.error as error:
            at = where if len(values) == 1 else f"{where}[{i}]"
            raise _Invalid(at, f"invalid regular expression {pattern!r}: {error}") from error

    def holds(row: Row) -> bool:
        value = row.get(field)
        return isinstance(value, str) and any(pattern.search(value) for pattern in patterns)

    return holds


def _cidr(field: str, values: list[str], case_sensitive: bool, where: str) -> Predicate:
    networks = []
    for i, text in enumerate(values):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as error:
            at = where if len(values) == 1 else f"{where}[{i}]"
            raise _Invalid(
                at, f"invalid network {text!r} (expected like 10.0.0.0/8): {error}"
            ) from error
    # By family: an address is compared only with networks of its own, except that an
    # IPv4-mapped IPv6 address (::ffff:10.1.2.3) is the IPv4 address it carries.
    v4 = tuple(net for net in networks if net.version == 4)
    v6 = tuple(net for net in networks if net.version == 6)

    def holds(row: Row) -> bool:
        value = row.get(field)
        address = _address(value) if isinstance(value, str) else None
        if address is None:
            return False
        if address.version == 4:
            return any(address in net for net in v4)
        mapped = address.ipv4_mapped
        return any(address in net for net in v6) or (
            mapped is not None and any(mapped in net for net in v4)
        )

    return holds


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Cached: the same few destination addresses recur across a flood of connects.
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


_OPERATOR_TESTS: Final[dict[str, Callable[[str, list[Any], bool, str], Predicate]]] = {
    "equals": _equals,
    "ends_with": _ends_with,
    "starts_with": _starts_with,
    "contains": _contains,
    "regex": _regex,
    "cidr": _cidr,
}


# --- messages ----------------------------------------------------------------


def _is_exactly(value: object, expected: int) -> bool:
    return type(value) is int and value == expected


def _kind(value: object) -> str:
    """A value as a message shows it: its type, and itself when short."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    name = {str: "text", int: "integer", float: "number"}.get(type(value), type(value).__name__)
    shown = repr(value)
    return f"{name} {shown}" if len(shown) <= 60 else name


def _listing(names: Sequence[str] | dict[Any, Any]) -> str:
    return ", ".join(str(name) for name in names)
