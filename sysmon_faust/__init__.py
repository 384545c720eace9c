"""sysmon-faust: real-time enrichment of Windows Sysmon telemetry on Kafka.

``faust -A sysmon_faust worker`` finds the App as ``sysmon_faust.app``, built in
:mod:`sysmon_faust.topology` (App, topics, table). It is
loaded on first access so that the pure modules (normalization, rules) and
the command-line tools import without building a Faust App.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "app":
        from sysmon_faust.topology import app

        return app
    raise AttributeError(f"module 'sysmon_faust' has no attribute {name!r}")
