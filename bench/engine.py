"""The engine alone: a worker's per-event steps in one process, without Kafka, Faust or RocksDB.

The bench's mix goes through what a worker does to each event in Python —
normalizing (the intake), the re-keying record's JSON written and read (the
hop's serialization), the join engine with the default rules, the outputs'
JSON — over :class:`~sysmon_faust.core.join.local.LocalJoin`, the engine
``rules test`` runs, on in-memory stores. It is settled every
:data:`SETTLE_EVERY` events, as a worker settles before each commit (Faust
commits every 2.8 s). Enriching only Sysmon 1, 3, 5 and every type over the
bench's mix, and a stream of creations only (the table fill's), rounds
alternating, the fastest round of each (the least disturbed by the machine).

What a worker spends per input event beyond this floor is the plumbing:
librdkafka and Faust's consumers, the producers and their delivery reports,
RocksDB, the event loop. The two side by side say which side a goal of
issue 20 or 21 has to be won on (docs/benchmark.md, "The engine alone").
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from sysmon_faust.core.join.local import LocalJoin
from sysmon_faust.core.normalize import NormalizedEvent, normalize
from sysmon_faust.core.rekey import (
    EVENT_ID_FIELD,
    EVENT_TIME_FIELD,
    RECEIVED_FIELD,
    BatchBuilder,
    decode_batch,
    key_partition,
)
from sysmon_faust.core.sigma import ruleset
from sysmon_faust.core.sigma.fields import EVENT_DATA
from sysmon_faust.core.synthetic import Workload, WorkloadConfig
from sysmon_faust.settings import Settings

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 3
#: Events between two settles (the summaries written, what was handed out
#: taken as done): a worker at ~10,000 events/s commits every ~28,000.
SETTLE_EVERY = 25_000
#: Events per intake batch (re-keying records are made per batch and partition).
BATCH = 500
PARTITIONS = 4


def _round(raws: list[bytes], enrich: frozenset[int]) -> dict[str, float]:
    """Seconds of each step over ``raws``, enriching ``enrich``."""
    rules = ruleset.load([REPO / "sysmon_faust" / "core" / "default_rules"])
    settings = Settings()
    join = LocalJoin.with_defaults(
        rules, int(settings.join_grace * 1000), settings.ancestry_depth,
        int(settings.alert_window * 1000), enrich_events=enrich,
    )  # fmt: skip
    other_ids, wanted = rules.intake_filter(enrich)
    spent = dict.fromkeys(("normalize", "rekey_encode", "rekey_decode", "engine", "outputs"), 0.0)
    outputs = 0
    clock = time.perf_counter
    for start in range(0, len(raws), BATCH):
        t0 = clock()
        outcomes = [normalize(raw, other_ids, wanted) for raw in raws[start : start + BATCH]]
        events = [outcome for outcome in outcomes if isinstance(outcome, NormalizedEvent)]
        t1 = clock()
        rekeyed = BatchBuilder()
        for event in events:
            record = {EVENT_ID_FIELD: event.event_id, RECEIVED_FIELD: 0.0,
                      EVENT_TIME_FIELD: event.timestamp_ms} | event.fields  # fmt: skip
            if event.event_data:
                record[EVENT_DATA] = event.event_data
            key = event.process_guid.encode() if event.process_guid else None
            rekeyed.add(key_partition(key, PARTITIONS) if key else 0, orjson.dumps(record))
        batches = [value for _, value in rekeyed.finish()]
        t_encoded = clock()
        for value in batches:
            decode_batch(value)
        t2 = clock()
        # In read order (LocalJoin's one partition), each event's fields built
        # again from the normalized event: what decode_batch gave back, as the
        # join reads it, but in one stream.
        made = []
        for event in events:
            made += join.feed(event, settle=False)
        if (start + BATCH) % SETTLE_EVERY == 0:
            join.settle()
        t3 = clock()
        for output in made:
            if output.written:
                orjson.dumps(output.row)
        outputs += len(made)
        spent["normalize"] += t1 - t0
        spent["rekey_encode"] += t_encoded - t1
        spent["rekey_decode"] += t2 - t_encoded
        spent["engine"] += t3 - t2
        spent["outputs"] += clock() - t3
    join.finish()
    return spent | {"records_made": outputs}


def creations_only(creations: int) -> WorkloadConfig:
    """The table fill's stream (bench/run.py, ``_fill_table``): every event a creation."""
    return WorkloadConfig(
        events=creations, hosts=200, seed=5, process_create_share=1.0,
        network_connect_share=0.0, other_sysmon_share=0.0, wmi_every=0,
    )  # fmt: skip


#: The steps a worker runs for the table fill, whose records come normalized and re-keyed.
FILL_STEPS = ("rekey_decode", "engine", "outputs")


def measure(events: int = 200_000, creations: int = 50_000, rounds: int = ROUNDS) -> dict[str, Any]:
    """µs per input event of each step, enriching only 1, 3, 5 and every type, and their ratio;
    and µs per creation of a stream of creations only (every type enriched, as the table
    fill), with the steps a worker runs for the fill (:data:`FILL_STEPS`) summed."""
    every = Settings().enrich_events
    mix = [event.value for event in Workload(WorkloadConfig(events=events, hosts=200))]
    created = [event.value for event in Workload(creations_only(creations))]
    runs = {
        "only_1_3_5": (mix, frozenset({1, 3, 5})),
        "every_type": (mix, every),
        "creations_only": (created, every),
    }
    best: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for name, (raws, enrich) in runs.items():
            spent = _round(raws, enrich)
            total = sum(v for k, v in spent.items() if k != "records_made")
            if name not in best or total < best[name]["total"]:
                best[name] = spent | {"total": total}
    result: dict[str, Any] = {"events": len(mix), "creations": len(created), "rounds": rounds}
    for name, spent in best.items():
        count = len(runs[name][0])
        result[name] = {
            f"{step}_us_per_event": round(seconds / count * 1e6, 2)
            for step, seconds in spent.items()
            if step != "records_made"
        } | {"records_per_event": round(spent["records_made"] / count, 3)}
    result["creations_only"]["fill_steps_us_per_creation"] = round(
        sum(best["creations_only"][step] for step in FILL_STEPS) / len(created) * 1e6, 1
    )
    result["ratio_every_type_to_1_3_5"] = round(
        best["only_1_3_5"]["total"] / best["every_type"]["total"], 2
    )
    return result


if __name__ == "__main__":
    print(orjson.dumps(measure(), option=orjson.OPT_INDENT_2).decode())
