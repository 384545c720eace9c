"""The topics a worker creates: partitions, retention, compaction."""

from __future__ import annotations

from collections.abc import Callable

from tests.support import WorkerProcess, partition_counts, topic_configs


def test_worker_creates_its_topics_with_partitions_and_retention(
    pipeline_env: Callable[..., dict[str, str]],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    env = pipeline_env(partitions=3)
    bootstrap, app_id = env["KAFKA_BOOTSTRAP_SERVERS"], env["SYSMON_APP_ID"]
    worker_factory(env)

    keyed = [env[f"SYSMON_TOPIC_{name}"] for name in
             ("PROCESS_CREATE", "NETWORK_CONNECT", "JOIN", "UNMATCHED", "ALERTS")]  # fmt: skip
    rekeyed = f"{app_id}-events-by-process-guid"
    changelog = f"{app_id}-process-create-changelog"
    everything = [*keyed, rekeyed, changelog, env["SYSMON_TOPIC_DLQ"], env["SYSMON_TOPIC_INPUT"]]

    counts = partition_counts(bootstrap, everything)
    assert counts == dict.fromkeys(everything, 3)

    configs = topic_configs(bootstrap, everything)
    # Records carry event time (possibly years old): nothing may expire by age
    # before it is read.
    for topic in [*keyed, rekeyed]:
        assert configs[topic]["retention.ms"] == "-1", topic
    for topic in keyed:
        assert int(configs[topic]["retention.bytes"]) > 0, topic
    assert configs[changelog]["cleanup.policy"] == "compact"
    assert int(configs[env["SYSMON_TOPIC_DLQ"]]["max.message.bytes"]) >= 16 * 1024 * 1024
