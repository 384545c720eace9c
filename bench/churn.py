"""``make bench-churn``: the process table under churn stays bounded — rows, RocksDB, RSS.

A worker reads a churning population of processes (sysmon_faust.core.churn:
creations at a steady rate of event time, a DNS query and a connect each, an
end after 5-300 s, 5 % never ending) through the real intake, with a
retention, a TTL, a DNS answer TTL and an activity TTL scaled down so that
the plateau comes within the run. Every 10 % of the creations handled it
records the rows the table holds (creations minus expiries, from /stats),
the reference's live rows at that stream time, the on-disk size of the
worker's RocksDB and of its pending table (which also holds each process's
DNS answers and activity summary), the connects named by their process's
DNS answer, and its RSS.

Prints a table; writes bench/results/churn-<timestamp>.json and churn-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from run import (  # bench/run.py
    REPO,
    RESULTS,
    Worker,
    bench_name,
    create_topic,
    log,
    measure_then_delete_topics,
    pipeline_env,
    produce_events,
)

from sysmon_faust.core.churn import Churn, ChurnConfig, ChurnExpected


def directory_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1024 / 1024


def sample(
    worker: Worker, data: Path, expected: ChurnExpected, retention_ms: int, ttl_ms: int
) -> dict[str, Any] | None:
    stats = worker.stats()
    if not stats:
        return None
    creates = stats["process_creates"]
    expired = stats["rows_expired_after_termination"] + stats["rows_expired_after_ttl"]
    # The stream time the table is at: the last creation handled (they come in order).
    stream_time = expected.created_ms[max(creates - 1, 0)]
    return {
        "processes": creates,
        "event_minutes": round((stream_time - expected.created_ms[0]) / 60_000, 1),
        "rows": creates - expired,
        "reference_rows": expected.live_rows(stream_time, retention_ms, ttl_ms),
        "rows_expired_after_termination": stats["rows_expired_after_termination"],
        "rows_expired_after_ttl": stats["rows_expired_after_ttl"],
        "rocksdb_mb": round(directory_mb(data), 1),
        "process_table_mb": round(
            sum(directory_mb(p) for p in data.rglob("*process-create*") if p.is_dir()), 1
        ),
        "pending_table_mb": round(
            sum(directory_mb(p) for p in data.rglob("*pending-connects*") if p.is_dir()), 1
        ),
        "connects_named": stats.get("connects_named", 0),
        "rss_mb": round(worker.peak_rss_mb(), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench-churn")
    parser.add_argument("--processes", type=int, default=300_000)
    parser.add_argument("--per-second", type=float, default=50.0, help="creations/s of event time")
    parser.add_argument("--retention", type=int, default=300, help="SYSMON_TABLE_RETENTION")
    parser.add_argument("--ttl", type=int, default=1800, help="SYSMON_TABLE_TTL")
    parser.add_argument("--dns-ttl", type=int, default=300, help="SYSMON_DNS_ANSWER_TTL")
    parser.add_argument("--activity-ttl", type=int, default=600, help="SYSMON_ACTIVITY_TTL")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    return measure_then_delete_topics(measure, args)


def measure(args: argparse.Namespace, bootstrap: str) -> int:
    work = REPO / "bench" / "work-churn"
    shutil.rmtree(work, ignore_errors=True)

    churn = Churn(ChurnConfig(processes=args.processes, per_second=args.per_second))
    source = bench_name("churn-input")
    asyncio.run(create_topic(bootstrap, source, args.partitions))
    log(f"filling {source} with {args.processes:,} processes (create, connect, mostly terminate)")
    asyncio.run(produce_events(bootstrap, source, churn, args.processes * 4))
    expected = churn.expected

    app_id = bench_name("churn")
    data = work / app_id
    env = pipeline_env(bootstrap, app_id, source, data, args.partitions)
    env |= {
        "SYSMON_TABLE_RETENTION": str(args.retention),
        "SYSMON_TABLE_TTL": str(args.ttl),
        "SYSMON_DNS_ANSWER_TTL": str(args.dns_ttl),
        "SYSMON_ACTIVITY_TTL": str(args.activity_ttl),
    }
    retention_ms, ttl_ms = args.retention * 1000, args.ttl * 1000
    log(f"one worker, retention {args.retention} s, TTL {args.ttl} s, DNS answers "
        f"{args.dns_ttl} s, activity {args.activity_ttl} s (of stream time)")  # fmt: skip
    worker = Worker(env, data)
    samples: list[dict[str, Any]] = []
    next_share = 0.1
    started = time.monotonic()
    try:
        while True:
            if worker.process.poll() is not None:
                raise SystemExit(f"worker died; see {worker.log}")
            current = sample(worker, data, expected, retention_ms, ttl_ms)
            if current and current["processes"] >= next_share * args.processes:
                samples.append(current)
                log(
                    f"{current['processes']:>9,} processes  {current['rows']:>7,} rows "
                    f"(reference {current['reference_rows']:,})  "
                    f"RocksDB {current['rocksdb_mb']} MB  RSS {current['rss_mb']} MB"
                )
                next_share = round(next_share + 0.1, 1)
                if current["processes"] >= args.processes:
                    break
            if time.monotonic() - started > 1800:
                raise SystemExit("the worker did not handle every creation within 30 minutes")
            time.sleep(1)
    finally:
        worker.stop()

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench-churn " + " ".join(sys.argv[1:]),
        "processes": args.processes,
        "events": expected.events,
        "per_second": args.per_second,
        "retention_s": args.retention,
        "ttl_s": args.ttl,
        "dns_ttl_s": args.dns_ttl,
        "activity_ttl_s": args.activity_ttl,
        "seconds": round(time.monotonic() - started, 1),
        "samples": samples,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for path in (RESULTS / f"churn-{stamp}.json", RESULTS / "churn-latest.json"):
        path.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(
        f"  {'processes':>10} {'event min':>9} {'rows':>8} {'reference':>9} "
        f"{'RocksDB MB':>10} {'table MB':>8} {'pending MB':>10} {'named':>8} {'RSS MB':>7}"
    )
    for s in samples:
        print(
            f"  {s['processes']:>10,} {s['event_minutes']:>9} {s['rows']:>8,} "
            f"{s['reference_rows']:>9,} {s['rocksdb_mb']:>10} {s['process_table_mb']:>8} "
            f"{s['pending_table_mb']:>10} {s['connects_named']:>8,} {s['rss_mb']:>7}"
        )
    print(f"\nwritten: {RESULTS / 'churn-latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
