"""The engine alone: a worker's per-event steps in one process, without Kafka, Faust or RocksDB.

The bench's mix goes through what a worker does to each event in Python —
normalizing (the intake), the re-keying record's JSON written and read (the
hop's serialization), the join engine with the default rules, the outputs'
JSON — over :class:`~sysmon_faust.core.join.local.LocalJoin`, the engine
``rules test`` runs, on in-memory stores. It is settled every
:data:`SETTLE_EVERY` events: a worker writes its activity summaries before
each commit (Faust commits every 2.8 s). Enriching only Sysmon 1, 3, 5 and every type over the
bench's mix, and a stream of creations only (the table fill's), rounds
alternating, the fastest round of each (the least disturbed by the machine).

What a worker spends per input event beyond this floor is mostly the
plumbing — librdkafka and Faust's consumers, the producers and their delivery
reports, RocksDB, the event loop — but not only: a worker also writes the
derived topics and the process tree, settles after each record, and, with 4
partitions, sends 3 in 4 Sysmon 8/10 to their target's partition for a second
pass through the engine, which here (one partition) looks the target up in
place. The in-memory stores keep their keys in sorted lists: a new key costs
more here than RocksDB's write in a worker (12 µs per creation for the row
and its expiry entry, against ~7 for two writes without the log, store.py).
The two side by side say on which side a goal of issue 20 or 21 has to be
won (docs/benchmark.md, "Every event enriched").
"""

from __future__ import annotations

import gc
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from sysmon_faust import engine_limits
from sysmon_faust.core.join.local import LocalJoin
from sysmon_faust.core.normalize import NormalizedEvent, normalize
from sysmon_faust.core.rekey import BatchBuilder, decode_batch, event_record, key_partition
from sysmon_faust.core.sigma import ruleset
from sysmon_faust.core.synthetic import Workload, WorkloadConfig
from sysmon_faust.settings import Settings

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 3
#: Input events between two settles (the activity summaries written, what was
#: handed out taken as done). A worker writes its summaries before each
#: commit, every 2.8 s (Faust's): every ~28,000 input events at 10,000/s
#: (every type enriched), ~100,000 at 35,000/s (only 1, 3, 5). The fewer
#: settles, the fewer summaries read again: this favours neither run much.
SETTLE_EVERY = 25_000
#: The worker's collector thresholds (sysmon_faust/worker.py), set for the rounds.
WORKER_GC_THRESHOLDS = (50_000, 20, 100)
#: Events per intake batch (re-keying records are made per batch and partition).
BATCH = 500
PARTITIONS = 4


def _round(raws: list[bytes], enrich: frozenset[int]) -> tuple[dict[str, float], int]:
    """(CPU seconds of this thread in each step over ``raws``, enriching ``enrich``; records
    made)."""
    rules = ruleset.load([REPO / "sysmon_faust" / "core" / "default_rules"])
    settings = replace(Settings(), enrich_events=enrich)
    join = LocalJoin(rules, engine_limits.lifetimes(settings), engine_limits.limits(settings))
    other_ids, wanted = rules.intake_filter(enrich)
    spent = dict.fromkeys(("normalize", "rekey_encode", "rekey_decode", "engine", "outputs"), 0.0)
    outputs = since_settle = 0
    # CPU, not wall time: as the workers' figures beside it (bench/run.py).
    clock = time.thread_time
    for start in range(0, len(raws), BATCH):
        t0 = clock()
        outcomes = [normalize(raw, other_ids, wanted) for raw in raws[start : start + BATCH]]
        events = [outcome for outcome in outcomes if isinstance(outcome, NormalizedEvent)]
        t1 = clock()
        rekeyed = BatchBuilder()
        for event in events:
            key = event.process_guid.encode() if event.process_guid else None
            record = event_record(event, 0.0)
            rekeyed.add(key_partition(key, PARTITIONS) if key else 0, orjson.dumps(record))
        batches = [value for _, value in rekeyed.finish()]
        t_encoded = clock()
        for value in batches:
            decode_batch(value)
        t2 = clock()
        # LocalJoin takes the normalized events in read order (one partition)
        # and builds each one's fields as decode_batch gives them back: the
        # decoding above is timed, its result not used.
        made = []
        for event in events:
            made += join.feed(event, settle=False)
        since_settle += BATCH
        if since_settle >= SETTLE_EVERY:
            join.settle()
            since_settle = 0
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
    return spent, outputs


def creations_only(creations: int) -> WorkloadConfig:
    """The table fill's stream (bench/run.py, ``_table_fill_records``): every event a creation."""
    return WorkloadConfig(
        events=creations, hosts=200, seed=5, process_create_share=1.0,
        network_connect_share=0.0, other_sysmon_share=0.0, wmi_every=0,
    )  # fmt: skip


#: The steps a worker runs for the table fill, whose records come normalized and re-keyed
#: (the engine's step includes each creation's parent link, which the intake makes in a worker).
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
    best: dict[str, tuple[dict[str, float], int]] = {}
    thresholds = gc.get_threshold()
    gc.set_threshold(*WORKER_GC_THRESHOLDS)
    try:
        for _ in range(rounds):
            for name, (raws, enrich) in runs.items():
                spent, made = _round(raws, enrich)
                spent["total"] = sum(spent.values())
                if name not in best or spent["total"] < best[name][0]["total"]:
                    best[name] = spent, made
    finally:
        gc.set_threshold(*thresholds)
    result: dict[str, Any] = {"events": len(mix), "creations": len(created), "rounds": rounds}
    for name, (spent, made) in best.items():
        count = len(runs[name][0])
        result[name] = {
            f"{step}_us_per_event": round(seconds / count * 1e6, 2)
            for step, seconds in spent.items()
        } | {"records_per_event": round(made / count, 3)}
    result["creations_only"]["fill_steps_us_per_creation"] = round(
        sum(best["creations_only"][0][step] for step in FILL_STEPS) / len(created) * 1e6, 1
    )
    # A throughput ratio, as the workers' (events/s every type over only 1, 3, 5).
    result["ratio_every_type_to_1_3_5"] = round(
        best["only_1_3_5"][0]["total"] / best["every_type"][0]["total"], 2
    )
    return result


if __name__ == "__main__":
    print(orjson.dumps(measure(), option=orjson.OPT_INDENT_2).decode())
