"""`topics ensure` on the real broker: missing topics are created with the settings' replication,
config drift of existing ones is corrected and replication drift reported (issue 18, item 3)."""

from __future__ import annotations

import dataclasses
import uuid

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.topics import TOPICS_BY_NAME
from services.common.kafka import delete_matching, reconcile_topics
from services.common.settings import KafkaSettings


async def test_config_drift_is_corrected_and_replication_drift_is_reported(kafka_bootstrap: str) -> None:
    run = uuid.uuid4().hex[:8]
    spec = dataclasses.replace(TOPICS_BY_NAME["sync.events.v1"], name=f"test.reconcile.{run}", partitions=2)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:  # an existing topic whose retention an operator changed
        await admin.create_topics([NewTopic(spec.name, 2, 1, topic_configs={"retention.ms": "1000"})])
    finally:
        await admin.close()
    try:
        settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_min_insync_replicas=1)
        created, drifts = await reconcile_topics(settings, [spec])
        assert created == []
        assert [d.topic for d in drifts] == [spec.name]
        assert drifts[0].replication_factor is None
        assert drifts[0].config["retention.ms"] == ("1000", spec.config["retention.ms"])

        _, after = await reconcile_topics(settings, [spec])
        assert after == []  # corrected

        wants_three = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_replication_factor=3)
        _, drifts = await reconcile_topics(wants_three, [spec], apply_config=False)
        assert [d.replication_factor for d in drifts] == [(1, 3)]
    finally:
        await delete_matching(KafkaSettings(bootstrap_servers=kafka_bootstrap), lambda n: n == spec.name)
