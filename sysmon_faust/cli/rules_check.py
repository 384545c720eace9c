"""``python -m sysmon_faust rules check PATH...``: which Sigma rules load, by category, and why not.

For the detection engineer before a deployment (and for a rules repository's
CI): the rules of the files and folders given are loaded exactly as the
worker loads ``SYSMON_RULES`` (:func:`sysmon_faust.core.sigma.ruleset.load`;
``default`` names the shipped rules there as here).
Prints, per logsource category, how many loaded and how many were refused,
then one line per refused rule (file, rule id, why); ``--list`` also lists
every loaded rule (category, id, level, title, author — the Detection Rule
License asks that authors be shown).

Exit status: 0 when every rule loaded, 1 when some were refused, 2 for a
missing path or bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from sysmon_faust.core.sigma import ruleset
from sysmon_faust.settings import rule_path

SOME_REFUSED = 1
USAGE = 2


def report(rules: ruleset.RuleSet, out: TextIO, list_rules: bool) -> None:
    """The counts by category, the refused rules, and with ``list_rules`` every loaded one."""
    by_category = rules.by_category()
    print(
        f"== Sigma rules: {len(rules)} loaded, {len(rules.refused)} refused, "
        f"{rules.not_for_sysmon} of other logsources left out (not Sysmon's)",
        file=out,
    )
    width = max((len(category) for category in by_category), default=8)
    print(f"  {'category':<{width}}  loaded  refused", file=out)
    for category, (loaded, refused) in by_category.items():
        print(f"  {category:<{width}}  {loaded:>6}  {refused:>7}", file=out)
    if rules.refused:
        print("refused:", file=out)
        for refusal in rules.refused:
            print(f"  {refusal.line()}", file=out)
    if list_rules:
        print("loaded:", file=out)
        for rule in sorted(rules.rules, key=lambda r: (r.category, r.title)):
            print(f"  {rule.category}  {rule.rule_id}  {rule.level}  {rule.title}"
                  f"  (by {rule.author or 'unknown'})", file=out)  # fmt: skip


def main(argv: Sequence[str], prog: str = "rules check") -> int:
    """``rules check PATH... [--list]``; returns the exit status."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[1])
    parser.add_argument(
        "paths", nargs="+", type=rule_path, metavar="PATH",
        help="Sigma rule files and folders; `default`: the shipped rules",
    )  # fmt: skip
    parser.add_argument("--list", action="store_true", help="also list every loaded rule")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return USAGE if exc.code else 0
    try:
        rules = ruleset.load(args.paths)
    except ruleset.RuleLoadError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return USAGE
    report(rules, sys.stdout, args.list)
    return SOME_REFUSED if rules.refused else 0
