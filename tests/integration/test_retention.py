"""Retention: rows go a retention after their process ended, or a TTL after they were written."""

from __future__ import annotations

from collections.abc import Callable

from sysmon_faust.core.churn import Churn, ChurnConfig
from tests.events import connect, create, guids_in_partition, terminate
from tests.support import WorkerProcess, create_topic, produce, read_topic

T0 = "2019-03-19 15:28:"  # + seconds; later times are spelled out


def test_rows_expire_after_termination_and_after_ttl(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env = {
        **pipeline_env(partitions=2),
        "SYSMON_JOIN_GRACE": "300",
        "SYSMON_TABLE_RETENTION": "60",
        "SYSMON_TABLE_TTL": "600",
    }
    bootstrap, input_topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"]
    create_topic(bootstrap, input_topic, partitions=1)
    # All on one re-keying partition: they share its stream time.
    ended, running, later, last = guids_in_partition(0, partitions=2, how_many=4)
    worker = worker_factory(env)

    produce(
        bootstrap,
        input_topic,
        [
            create(T0 + "00.000", ended),
            create(T0 + "01.000", running),
            terminate(T0 + "10.000", ended),
            # Logged after the process ended, within the retention: still joins.
            connect(T0 + "40.000", ended, 443),
        ],
        partition=0,
    )
    stats = worker.wait_for(lambda s: s["join_handled"] >= 4, timeout=60)
    assert stats["joined"] == 1 and stats["table_rows"] == 2
    status, row = worker.http(f"/process/{ended}")
    assert status == 200 and row["process_terminated_at"] == "2019-03-19T15:28:10.000Z"

    # Stream time passes the termination + 60 s: the ended process's row goes.
    produce(bootstrap, input_topic, [create("2019-03-19 15:31:20.000", later)], partition=0)
    stats = worker.wait_for(lambda s: s["rows_expired_after_termination"] >= 1, timeout=60)
    assert stats["rows_expired_after_ttl"] == 0
    status, body = worker.http(f"/process/{ended}")
    assert status == 404, body
    status, row = worker.http(f"/process/{running}")
    assert status == 200 and row["process_terminated_at"] is None

    # A connect of the ended process now finds no row: it waits, then expires.
    produce(bootstrap, input_topic, [connect("2019-03-19 15:31:30.000", ended, 8080)], partition=0)
    worker.wait_for(lambda s: s["pending_connects"] == 1, timeout=60)

    # Stream time passes the running process's TTL (written at :01, 600 s)
    # and the waiting connect's grace.
    produce(bootstrap, input_topic, [create("2019-03-19 15:38:30.000", last)], partition=0)
    stats = worker.wait_for(
        lambda s: s["rows_expired_after_ttl"] >= 1 and s["pending_connects"] == 0, timeout=60
    )
    assert stats["rows_expired_after_termination"] == 1
    assert stats["table_rows"] == 2  # `later` and `last`
    status, body = worker.http(f"/process/{running}")
    assert status == 404, body
    assert stats["unmatched_by_reason"] == {"process_unknown_after_grace": 1}
    [stray] = [r.json() for r in read_topic(bootstrap, env["SYSMON_TOPIC_UNMATCHED"], 1)]
    assert stray["process_guid"] == ended and stray["dst_port"] == 8080

    # The deletions reached the changelog as tombstones: a worker that
    # rebuilds the table from it does not bring the rows back.
    changelog = read_topic(bootstrap, f"{env['SYSMON_APP_ID']}-process-create-changelog")
    last_value = {record.key: record.value for record in changelog}
    assert last_value[ended.encode()] is None
    assert last_value[running.encode()] is None
    assert last_value[later.encode()] is not None


def test_a_churning_population_keeps_the_table_bounded(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    retention_s, ttl_s = 30, 120
    env = {
        **pipeline_env(partitions=4),
        "SYSMON_TABLE_RETENTION": str(retention_s),
        "SYSMON_TABLE_TTL": str(ttl_s),
    }
    bootstrap, input_topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_TOPIC_INPUT"]
    # 6,000 processes over 300 s of event time, living 5 to 60 s; 5 % never end.
    churn = Churn(ChurnConfig(processes=6_000, per_second=20, max_lifetime_seconds=60))
    events = list(churn)
    create_topic(bootstrap, input_topic, partitions=4)
    produce(bootstrap, input_topic, [e.value for e in events], keys=[e.host for e in events])
    worker = worker_factory(env)

    expected = churn.expected
    end_ms = max(expected.created_ms + [t for t in expected.ended_ms if t is not None])
    # Expiry has caught up once no row is left that is due at the last event.
    due_at_end = expected.live_rows(end_ms, retention_s * 1000, ttl_s * 1000)
    stats = worker.wait_for(
        lambda s: (
            s["consumed"] >= len(events)
            and s["join_handled"] >= s["normalized"]
            and s["table_rows"] <= due_at_end
        ),
        timeout=180,
    )
    # Each row created is either still there or was deleted once.
    expired = stats["rows_expired_after_termination"] + stats["rows_expired_after_ttl"]
    assert stats["process_creates"] == len(expected.created_ms)
    assert stats["table_rows"] + expired == stats["process_creates"]
    # Stream time moves on with the wall clock after the last event: a minute
    # later, fewer rows may be left, never fewer than the reference's.
    assert stats["table_rows"] >= expected.live_rows(
        end_ms + 60_000, retention_s * 1000, ttl_s * 1000
    )
    assert stats["table_rows"] < len(expected.created_ms) / 4
    assert stats["rows_expired_after_ttl"] > 0 and stats["rows_expired_after_termination"] > 0
    print(
        f"{len(expected.created_ms)} processes: {stats['table_rows']} rows left "
        f"(reference {due_at_end}), {stats['rows_expired_after_termination']} expired after "
        f"termination, {stats['rows_expired_after_ttl']} after the TTL"
    )
