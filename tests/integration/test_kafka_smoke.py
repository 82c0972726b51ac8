"""Smoke tests against the real broker: produce, consume in a group, resume from committed offsets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.common.kafka import read_until_end

DEADLINE_S = 30.0


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value=value, key=b"same-key")
    finally:
        await producer.stop()


def group_consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def take(consumer: AIOKafkaConsumer, count: int) -> list[bytes]:
    """The next `count` record values, one at a time, within the deadline."""
    values: list[bytes] = []
    async with asyncio.timeout(DEADLINE_S):
        while len(values) < count:
            record = await consumer.getone()
            values.append(record.value)
    return values


async def test_consumer_group_reads_every_produced_message_in_order(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topic: Callable[..., Awaitable[str]]
) -> None:
    topic, group = await make_topic("smoke"), unique_name("group")
    sent = [f"message-{i}".encode() for i in range(20)]
    await produce(kafka_bootstrap, topic, sent)

    consumer = group_consumer(kafka_bootstrap, topic, group)
    await consumer.start()
    try:
        received = await take(consumer, len(sent))
    finally:
        await consumer.stop()

    assert received == sent


async def test_second_consumer_in_group_resumes_after_committed_offset(
    kafka_bootstrap: str, unique_name: Callable[[str], str], make_topic: Callable[..., Awaitable[str]]
) -> None:
    topic, group = await make_topic("smoke"), unique_name("group")
    sent = [f"record-{i}".encode() for i in range(10)]
    await produce(kafka_bootstrap, topic, sent)
    partition = TopicPartition(topic, 0)

    first = group_consumer(kafka_bootstrap, topic, group)
    await first.start()
    try:
        first_part = await take(first, 4)
        await first.commit({partition: 4})  # the next offset to read
    finally:
        await first.stop()

    second = group_consumer(kafka_bootstrap, topic, group)
    await second.start()
    try:
        rest = await take(second, len(sent) - 4)
        committed_before = await second.committed(partition)
        await second.commit()
        committed_after = await second.committed(partition)
    finally:
        await second.stop()

    assert first_part == sent[:4]
    assert rest == sent[4:]
    assert committed_before == 4
    assert committed_after == len(sent)


async def test_read_until_end_returns_every_record_up_to_the_end_offsets_and_then_stops(
    kafka_bootstrap: str, make_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await make_topic("read-to-end", partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(7):
            await producer.send_and_wait(topic, value=f"m{n}".encode(), key=f"k{n}".encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        async with asyncio.timeout(DEADLINE_S):
            values = sorted([r.value async for r in read_until_end(consumer, partitions)])
    finally:
        await consumer.stop()
    assert values == [f"m{n}".encode() for n in range(7)]
