"""Several writer instances in one group get the same partition numbers of all three input topics."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer

from services.common.kafka import new_consumer
from services.common.settings import KafkaSettings
from services.writer.service import ASSIGNORS


async def test_two_instances_each_get_the_same_partition_numbers_of_every_input_topic(
    kafka_bootstrap: str, writer_topics: dict[str, str]
) -> None:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    inputs = [writer_topics["records"], writer_topics["psa"], writer_topics["commands"]]
    group = f"test-writer-assign-{uuid.uuid4().hex[:8]}"
    consumers: list[AIOKafkaConsumer] = [
        new_consumer(kafka, *inputs, group_id=group, partition_assignment_strategy=ASSIGNORS)
        for _ in range(2)
    ]
    for consumer in consumers:
        await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            await asyncio.gather(*(c.getmany(timeout_ms=200) for c in consumers))
            assigned = [c.assignment() for c in consumers]
            if (sum(len(a) for a in assigned) == 9 and all(assigned)) or time.monotonic() > deadline:
                break
    finally:
        for consumer in consumers:
            await consumer.stop()
    assert sum(len(a) for a in assigned) == 9  # 3 topics x 3 partitions, each owned once
    for owned in assigned:
        numbers = {topic: {tp.partition for tp in owned if tp.topic == topic} for topic in inputs}
        assert numbers[inputs[0]] == numbers[inputs[1]] == numbers[inputs[2]] != set()
