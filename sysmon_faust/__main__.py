"""``python -m sysmon_faust [--debug] COMMAND``: the operator's commands.

A mistake is one line on stderr and a non-zero exit (:mod:`sysmon_faust.cli.errors`);
``--debug`` shows the traceback too.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from sysmon_faust.cli import errors

PROG = "python -m sysmon_faust"

COMMANDS = {
    "replay": "load recordings (.json, .jsonl, .gz, .evtx, .tar.gz, .zip) into the input topic",
    "topics": "the app's topics: partitions, end offsets, committed offsets, lag",
    "print": "print a topic's records: TOPIC [--last N | --from-beginning] [--follow]",
    "describe": "the record types' fields and types; each topic's partitions and policy",
    "rules": "Sigma rules: rules test FILE... (offline, on recordings); rules check PATH...",
}


def package_version() -> str:
    try:
        return version("sysmon-faust")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def usage() -> str:
    lines = [f"usage: {PROG} [--debug] [--version] COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
    lines += ["", "The worker itself: faust -A sysmon_faust worker -l info"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--debug"]:
        errors.DEBUG = True
        args = args[1:]
    errors.quiet_libraries()
    if args[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    if args[:1] == ["--version"]:
        print(f"sysmon-faust {package_version()}")
        return 0
    if not args:
        print(usage(), file=sys.stderr)
        return errors.USAGE_ERROR
    if args[0] not in COMMANDS:
        errors.say_error(
            PROG, f"unknown command {args[0]!r}; the commands: {', '.join(COMMANDS)} "
            f"(see: {PROG} --help)",
        )  # fmt: skip
        return errors.USAGE_ERROR
    try:
        return _run(args[0], args[1:])
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except Exception as exc:
        # A bug of ours, not the user's mistake: still one line, and the way to more.
        errors.say_error(
            f"{PROG} {args[0]}",
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback, "
            "and please report it)",
        )
        return errors.WORLD_ERROR


def _run(command: str, rest: list[str]) -> int:
    if command == "replay":
        from sysmon_faust.cli.replay import main as replay_main

        return replay_main(rest, prog=f"{PROG} replay")
    if command == "rules":
        # Offline: no broker, and no Faust app (the settings module would build one).
        from sysmon_faust.cli.rules_test import main as offline_main

        return offline_main(rest, prog=f"{PROG} rules")
    from sysmon_faust.cli.ops import main as ops_main

    return ops_main(command, rest)


if __name__ == "__main__":
    sys.exit(main())
