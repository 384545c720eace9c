"""``python -m sysmon_faust COMMAND``: the operator's commands."""

from __future__ import annotations

import sys
from collections.abc import Sequence

COMMANDS = {
    "replay": "load recorded events (.json, .jsonl, .gz) into the input topic",
    "topics": "the app's topics: partitions, end offsets, committed offsets, lag",
    "print": "print a topic's records: TOPIC [--from-beginning] [--limit N] [--follow]",
    "describe": "the record types' fields and types; each topic's partitions and policy",
    "rules": "test detection rules offline against recordings: rules test FILE... [--json]",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        print("usage: python -m sysmon_faust COMMAND [ARGS]\n\ncommands:", file=sys.stderr)
        for name, text in COMMANDS.items():
            print(f"  {name:<10} {text}", file=sys.stderr)
        print("\nThe worker itself: faust -A sysmon_faust worker -l info", file=sys.stderr)
        return 0 if args and args[0] in ("-h", "--help") else 2
    command, rest = args[0], args[1:]
    if command == "replay":
        from sysmon_faust.replay import main as replay_main

        return replay_main(rest, prog="python -m sysmon_faust replay")
    if command == "rules":
        # Offline: no broker, and no Faust app (the settings module would build one).
        from sysmon_faust.offline import main as offline_main

        return offline_main(rest, prog="python -m sysmon_faust rules")
    from sysmon_faust.ops import main as ops_main

    return ops_main(command, rest)


if __name__ == "__main__":
    sys.exit(main())
