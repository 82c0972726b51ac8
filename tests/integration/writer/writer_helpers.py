"""Helpers of the writer's integration tests: settings on per-test topics, a running writer, produce/read."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer

from services.common.kafka import new_consumer, new_producer
from services.common.settings import KafkaSettings
from services.writer.consumer import Writer
from services.writer.settings import WriterSettings
from services.writer.store import AsyncPostgresStore, StoreOptions


def writer_settings(topics: dict[str, str], **overrides: Any) -> WriterSettings:
    options: dict[str, Any] = {
        "group_id": f"test-writer-{uuid.uuid4().hex[:8]}",
        "records_topic": topics["records"],
        "psa_topic": topics["psa"],
        "commands_topic": topics["commands"],
        "events_topic": topics["events"],
        "deadletter_topic": topics["dlq"],
        "batch_max_records": 500,
        "batch_max_ms": 50,
        "retry_initial_s": 0.1,
        "retry_max_s": 1.0,
    }
    options.update(overrides)
    return WriterSettings(**options)


@asynccontextmanager
async def running_writer(
    kafka_bootstrap: str, database_url: str, settings: WriterSettings
) -> AsyncIterator[Writer]:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    consumer = new_consumer(
        kafka, settings.records_topic, settings.psa_topic, settings.commands_topic, group_id=settings.group_id
    )
    producer = new_producer(kafka)
    store = AsyncPostgresStore(database_url, StoreOptions(connect_timeout_s=2))
    writer = Writer(settings, consumer, producer, store)
    await producer.start()
    await consumer.start()
    task = asyncio.create_task(writer.run())
    try:
        yield writer
    finally:
        writer.stop()
        await asyncio.wait_for(task, 60)
        await consumer.stop()
        await producer.stop()
        await store.close()


async def produce(kafka_bootstrap: str, topic: str, items: list[Any]) -> None:
    """Send events (or `(key, raw bytes)` pairs) in order, keyed by client."""
    producer = new_producer(KafkaSettings(bootstrap_servers=kafka_bootstrap))
    await producer.start()
    try:
        for item in items:
            if isinstance(item, tuple):
                await producer.send_and_wait(topic, item[1], key=item[0])
            else:
                await producer.send_and_wait(topic, item.to_bytes(), key=item.key)
    finally:
        await producer.stop()


async def read_all(
    kafka_bootstrap: str, topic: str, *, expect: int = 1, timeout_s: float = 20.0
) -> list[Any]:
    """Every message of `topic` from the beginning, waiting until at least `expect` arrived."""
    consumer: AIOKafkaConsumer = new_consumer(
        KafkaSettings(bootstrap_servers=kafka_bootstrap), topic, group_id=None
    )
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            got = await consumer.getmany(timeout_ms=300)
            for records in got.values():
                out.extend(records)
            if len(out) >= expect and not got:
                break
    finally:
        await consumer.stop()
    return out


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout_s: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        outcome = check()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)
