"""sysmon-faust: real-time enrichment of Windows Sysmon telemetry on Kafka.

``faust -A sysmon_faust worker`` finds the App as ``sysmon_faust.app``: the
worker put together by :mod:`sysmon_faust.worker`. It is built on
first access, so that the pure core (:mod:`sysmon_faust.core`) and the
commands (:mod:`sysmon_faust.cli`) import without building a Faust App. A
bad setting or detection rule is reported here, in one line and exit
status 1, as the worker's first words: not a traceback.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(f"module 'sysmon_faust' has no attribute {name!r}")
    from sysmon_faust.core.sigma.ruleset import RuleLoadError
    from sysmon_faust.settings import SettingsError

    try:
        from sysmon_faust.worker import app
    except SettingsError as error:
        raise SystemExit(f"sysmon-faust: bad setting: {error}") from None
    except RuleLoadError as error:
        raise SystemExit(f"sysmon-faust: bad detection rules: {error}") from None
    return app
