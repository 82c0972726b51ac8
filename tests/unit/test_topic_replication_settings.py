"""Every topic, the mapper's changelog included, takes its replication factor and
min.insync.replicas from settings; drift of existing topics is computed purely (issue 18, item 3)."""

from __future__ import annotations

from services.common.kafka import topic_drift
from services.common.settings import KafkaSettings
from services.mapper.changelog import changelog_spec


def test_the_mappers_changelog_is_compacted_and_takes_min_insync_replicas_from_settings() -> None:
    kafka = KafkaSettings(
        bootstrap_servers="127.0.0.1:1", topic_replication_factor=3, topic_min_insync_replicas=2
    )
    spec = changelog_spec("unit-rf", 2)

    assert spec.name == "unit-rf-state-changelog"
    assert spec.partitions == 2
    # ensure_topics creates it like every topic: max(spec, settings) replicas, the settings' min ISR
    assert max(spec.replication_factor, kafka.topic_replication_factor) == 3
    assert kafka.topic_config(dict(spec.config)) == {"cleanup.policy": "compact", "min.insync.replicas": "2"}


def test_the_settings_add_min_insync_replicas_to_a_topics_registry_config() -> None:
    kafka = KafkaSettings(topic_min_insync_replicas=2)
    assert kafka.topic_config({"retention.ms": "1"}) == {"retention.ms": "1", "min.insync.replicas": "2"}
    assert KafkaSettings().topic_config({"retention.ms": "1"}) == {"retention.ms": "1"}


def test_drift_names_replication_factor_missing_partitions_and_config_differences() -> None:
    drift = topic_drift(
        "t",
        wanted_partitions=6,
        wanted_replication_factor=3,
        wanted_config={"retention.ms": "100", "min.insync.replicas": "2"},
        actual_partitions=3,
        actual_replication_factor=1,
        actual_config={"retention.ms": "100", "min.insync.replicas": "1"},
    )
    assert drift.describe() == [
        "partitions 3 (wanted 6)",
        "replication factor 1 (wanted 3)",
        "min.insync.replicas=1 (wanted 2)",
    ]


def test_a_topic_as_wanted_or_with_more_partitions_has_no_drift() -> None:
    drift = topic_drift(
        "t",
        wanted_partitions=6,
        wanted_replication_factor=1,
        wanted_config={"retention.ms": "100"},
        actual_partitions=12,
        actual_replication_factor=1,
        actual_config={"retention.ms": "100", "other": "x"},
    )
    assert drift.describe() == []
