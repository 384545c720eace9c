"""Detections over enriched network events (``sysmon-join`` rows): pure predicates, table-tested.

The one rule of HELK's recipe: ``PARENT_PROCESS_PATH LIKE '%WmiPrvSE.exe%'``
— a process started by WMI's provider host (remote ``Win32_Process.Create``,
ATT&CK T1047) that connects out. We match the parent's file name exactly and
without regard to case, so a path that merely contains the text (for example
``C:\\tools\\WmiPrvSE.exe.bak``) does not fire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sysmon_faust.join import Row
from sysmon_faust.normalize import file_name


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    rule_name: str
    attack_technique: str
    severity: str
    matches: Callable[[Row], bool]


def _parent_is(executable: str) -> Callable[[Row], bool]:
    wanted = executable.lower()

    def matches(event: Row) -> bool:
        name = file_name(event.get("parent_process_path"))
        return name is not None and name.lower() == wanted

    return matches


WMI_CHILD_NETWORK_CONNECT = Rule(
    rule_id="sysmon-wmi-child-network-connect",
    rule_name="Process started by WMI provider host (WmiPrvSE.exe) made a network connection",
    attack_technique="T1047",
    severity="high",
    matches=_parent_is("WmiPrvSE.exe"),
)

DEFAULT_RULES: tuple[Rule, ...] = (WMI_CHILD_NETWORK_CONNECT,)


def matching_rules(event: Row, rules: tuple[Rule, ...] = DEFAULT_RULES) -> list[Rule]:
    """The rules that fire on an enriched (``sysmon-join``) record."""
    return [rule for rule in rules if rule.matches(event)]
