"""The worker's Sigma rules (``SYSMON_RULES``), loaded once at start, and what the intake keeps.

A rule that cannot be evaluated is refused: logged (one line: file, rule id,
why), counted in ``/stats`` (``sigma_rules_refused``), and the rest load — a
SigmaHQ checkout always holds a few rules of newer syntax, and one of them
must not keep the others from running.

The intake asks :func:`wanted` of every Sysmon event other than 1/3/5: it goes on
to the join (re-keyed by its process) when a rule on its event id that uses
process context may match it (the event holds what that rule needs of the
event itself), or when a rule on the event alone matches it — the join then
alerts, with the process's context in the alert (:meth:`RuleSet.wanted`).
An event whose id is enriched (``SYSMON_ENRICH_EVENTS``) always goes on: it
is written to ``sysmon-enriched`` with its process, whatever the rules say.
Anything else is dropped at the intake, counted as ``sysmon_event_<id>``: the re-keying topic
carries only what a rule or the enrichment wants (``make bench`` has the cost).
"""

from __future__ import annotations

import logging

from sysmon_faust.core.sigma import ruleset
from sysmon_faust.core.stats import stats
from sysmon_faust.stream.topology import settings

log = logging.getLogger(__name__)

RULES = ruleset.load(settings.rules_paths)
stats.sigma_rules_loaded = len(RULES)
stats.sigma_rules_refused = len(RULES.refused)
for _refused in RULES.refused:
    log.warning("Sigma rule refused: %s", _refused.line())
log.info(
    "Sigma rules: %d loaded (%s), %d refused, %d of other logsources left out",
    len(RULES),
    ", ".join(f"{category} {loaded}" for category, (loaded, _) in RULES.by_category().items()
              if loaded),
    len(RULES.refused),
    RULES.not_for_sysmon,
)  # fmt: skip

#: Sysmon event ids beyond 1/3/5 that the intake normalizes (those some rule is
#: about, and those enriched), and whether an event of one of them goes to the
#: join (see the module docstring), from its EventData alone: the normalizer
#: asks before it maps the event.
OTHER_EVENT_IDS, wanted = RULES.intake_filter(settings.enrich_events)
