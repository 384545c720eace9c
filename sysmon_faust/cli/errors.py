"""What every command does with a mistake: one line naming the cause and what to do.

The commands (``python -m sysmon_faust …``, the demo) report a user's
mistake — a bad setting, a broker that does not answer, a missing or
unreadable file, an unknown option — as one line on stderr and a non-zero
exit status, never a traceback; ``--debug`` (before the command) shows the
traceback too. Exit status 2 is a mistake in what was asked (arguments,
settings, files), 1 one of the world (Kafka unreachable or refusing).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import NoReturn

from sysmon_faust.settings import Settings, SettingsError

#: Set by ``python -m sysmon_faust --debug``: tracebacks are printed too.
DEBUG = False

USAGE_ERROR = 2
WORLD_ERROR = 1


def quiet_libraries() -> None:
    """Keep the Kafka clients' own log lines off a command's stderr (``--debug`` shows them).

    Without a logging setup Python prints their warnings and errors as they
    come ("Unable connect to ...") above the command's one line.
    """
    if not DEBUG:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        logging.getLogger("kafka").setLevel(logging.CRITICAL)


def say_error(prog: str, message: str) -> None:
    """The one line (and, with ``--debug``, the traceback being handled)."""
    if DEBUG and sys.exc_info()[0] is not None:
        traceback.print_exc()
    print(f"{prog}: {message}", file=sys.stderr, flush=True)


class OneLineParser(argparse.ArgumentParser):
    """argparse, whose error is one line that points at ``--help`` (not usage + message)."""

    def error(self, message: str) -> NoReturn:
        say_error(self.prog, f"{message} (see: {self.prog} --help)")
        raise SystemExit(USAGE_ERROR)


def settings_or_exit(prog: str) -> Settings:
    """The settings from the environment; a bad one ends the command with its line."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        say_error(prog, f"bad setting: {exc}")
        raise SystemExit(USAGE_ERROR) from None


def kafka_unreachable(settings: Settings, exc: BaseException) -> str:
    """The line for a broker that did not answer (not one that refused a login)."""
    text, name = str(exc), type(exc).__name__
    named = text if text.startswith(name) else f"{name}: {text}"
    return (
        f"cannot talk to Kafka at {settings.bootstrap_servers} ({named}); "
        "is the broker up? Start the local one with 'make kafka-up', or set "
        "KAFKA_BOOTSTRAP_SERVERS"
    )
