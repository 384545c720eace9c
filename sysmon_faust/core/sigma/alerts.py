"""The ``sysmon-alerts`` record of a Sigma rule firing on an event.

The contract's fields (``../shared/docs/CONTRACT.md``, "sysmon-alerts") keep
their meaning with Sigma's metadata in them: ``rule_id`` is the rule's id,
``rule_name`` its title, ``severity`` its level, ``attack_technique`` its
first ``attack.tNNNN`` tag. Added: the rule's status, tags, author (the
Detection Rule License asks that it be kept) and references, the logsource
category the event was matched as, and the event's Sysmon id.
"""

from __future__ import annotations

from typing import Any

from sysmon_faust.core.sigma.logsource import EVENT_CATEGORY
from sysmon_faust.core.sigma.ruleset import SigmaRule

Row = dict[str, Any]


def alert_record(rule: SigmaRule, event_id: int, event: Row, detected_at: str) -> Row:
    """The alert: ``event`` is the matched event with its process context (a ``sysmon-join``
    row for a connect; :func:`sysmon_faust.core.join.semantics.enrich_event` otherwise);
    ``detected_at``: ISO 8601 UTC, the wall clock."""
    return {
        "rule_id": rule.rule_id,
        "rule_name": rule.title,
        "attack_technique": rule.attack_technique,
        "severity": rule.level,
        "detected_at": detected_at,
        "event": event,
        "rule_status": rule.status,
        "rule_tags": list(rule.tags),
        "rule_author": rule.author,
        "rule_references": list(rule.references),
        "logsource_category": rule.category
        if len(rule.event_ids) == 1
        else EVENT_CATEGORY.get(event_id, rule.category),
        "event_id": event_id,
    }
