"""Normalization never raises: any bytes, any JSON, any mangled Sysmon event → an event or a reason.

Property-based (hypothesis): the worker calls ``normalize`` on whatever the
input topic holds, and an exception there would be a dead letter without a
useful reason at best.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sysmon_faust.core.normalize import Filtered, Invalid, NormalizedEvent, normalize

OUTCOMES = (NormalizedEvent, Filtered, Invalid)
#: In CI the examples are the same every run (a red CI must be reproducible);
#: on a developer's machine they differ from run to run and keep exploring.
CI = bool(os.environ.get("CI"))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=25,
)

SYSMON_KEYS = [
    "UtcTime", "ProcessGuid", "ProcessId", "Image", "CommandLine", "ParentProcessGuid",
    "ParentImage", "SourceIp", "SourcePort", "DestinationIp", "DestinationPort", "Protocol",
    "Initiated", "User", "LogonId", "Hashes",
]  # fmt: skip


def assert_outcome(raw: bytes) -> None:
    outcome = normalize(raw)
    assert isinstance(outcome, OUTCOMES)
    if isinstance(outcome, Invalid):
        assert outcome.error  # a reason a person can read


@settings(max_examples=500, deadline=None, derandomize=CI)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(raw: bytes) -> None:
    assert_outcome(raw)


@settings(max_examples=500, deadline=None, derandomize=CI)
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    assert_outcome(json.dumps(value).encode())


@settings(max_examples=500, deadline=None, derandomize=CI)
@given(
    st.sampled_from([1, 3, 5, "1", "3", 5.0, None, -1, 2**70]),
    st.dictionaries(st.sampled_from(SYSMON_KEYS), json_values, max_size=len(SYSMON_KEYS)),
    st.sampled_from(["winlog", "flat"]),
)
def test_sysmon_shaped_documents_with_arbitrary_values(
    event_id: Any, data: dict[str, Any], shape: str
) -> None:
    channel = "Microsoft-Windows-Sysmon/Operational"
    if shape == "winlog":
        doc: dict[str, Any] = {
            "winlog": {"event_id": event_id, "channel": channel, "event_data": data}
        }
    else:
        doc = {"EventID": event_id, "Channel": channel, **data}
    assert_outcome(json.dumps(doc).encode())
