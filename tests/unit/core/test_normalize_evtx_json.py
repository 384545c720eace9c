"""The event's XML as JSON (evtx_dump, chainsaw, SigmaHQ's regression data) is read.

Every event of ``../shared/sigma/regression_data`` (one or more JSON objects
per file): a Sysmon 1/3/5 becomes an event whose GUID, image, computer and
time are those of its ``EventData``/``System``; anything else is filtered;
nothing is a dead letter.
"""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from sysmon_faust.cli.recordings import read_records
from sysmon_faust.core.normalize import Filtered, NormalizedEvent, normalize_document
from tests.support import SHARED

REGRESSION_DATA = SHARED / "sigma" / "regression_data"


def test_every_regression_event_is_read() -> None:
    if not REGRESSION_DATA.is_dir():
        pytest.skip(f"{REGRESSION_DATA} not found (set SYSMON_SHARED_DIR)")
    outcomes: Counter[str] = Counter()
    sysmon_1_3_5 = 0
    for path in sorted(REGRESSION_DATA.rglob("*.json")):
        for document in map(orjson.loads, read_records(path)):
            outcome = normalize_document(document)
            system, data = document["Event"]["System"], document["Event"]["EventData"]
            provider = system["Provider"]["#attributes"]["Name"]
            sysmon_1_3_5 += provider == "Microsoft-Windows-Sysmon" and system["EventID"] in (
                1,
                3,
                5,
            )
            if isinstance(outcome, NormalizedEvent):
                outcomes["normalized"] += 1
                guid = "{" + data["ProcessGuid"].strip("{}").lower() + "}"
                assert outcome.process_guid == guid, path
                assert outcome.fields["process_path"] == data["Image"], path
                assert outcome.fields["host_name"] == system["Computer"], path
                assert outcome.event_id == system["EventID"], path
                assert outcome.fields["event_date_creation"][:19] == (
                    data["UtcTime"][:19].replace(" ", "T")
                ), path
            else:
                assert isinstance(outcome, Filtered), (path, outcome)
                outcomes[outcome.reason] += 1
    assert outcomes["normalized"] == sysmon_1_3_5 > 0
