"""The writer's orchestration (services/writer/consumer.py) on the in-memory store of the unit tests
(which keeps the store port's contract: writer_store_contract.py) and fake Kafka clients: splitting a
refused batch, the outbox when Kafka fails, retries while the database is away, recovery at start,
and the pipelined loop."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError
from writer_factories import as_incoming, make_record, unique_tenant
from writer_fakes import InMemoryWriterStore

from schemas.topics import CONTRACT_RECORDS, DLQ_REASON
from services.writer.consumer import Writer
from services.writer.handlers import Incoming
from services.writer.settings import WriterSettings


class FakeProducer:
    """Acknowledges every send, or refuses sends while `failing`."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, list[tuple[str, bytes]]]] = []
        self.failing = False

    async def send(
        self, topic: str, value: bytes | None, *, key: bytes | None = None, headers: Any = None
    ) -> Any:
        if self.failing:
            raise KafkaConnectionError("broker unavailable (fake)")
        self.sent.append((topic, value, list(headers or [])))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def send_and_wait(
        self, topic: str, value: bytes | None, *, key: bytes | None = None, headers: Any = None
    ) -> None:
        await (await self.send(topic, value, key=key, headers=headers))

    def types(self) -> list[str]:
        return [
            json.loads(v)["type"] if not any(h == DLQ_REASON for h, _ in hs) else "deadletter"
            for _, v, hs in self.sent
            if v
        ]


class FakeConsumer:
    """Hands out the queued batches, then asks the writer to stop; remembers committed offsets."""

    def __init__(self, batches: list[list[Incoming]] | None = None) -> None:
        self.batches: deque[list[Incoming]] = deque(batches or [])
        self.commits: list[dict[TopicPartition, int]] = []
        self.writer: Writer | None = None

    async def getmany(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0)
        if not self.batches:
            if self.writer is not None:
                self.writer.stop()
            return {}
        batch = self.batches.popleft()
        tp = TopicPartition(batch[0].topic, batch[0].partition)
        return {
            tp: [
                ConsumerRecord(
                    m.topic, m.partition, m.offset, 0, 0, m.key, m.value, None, 0, 0, list(m.headers)
                )
                for m in batch
            ]
        }

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def assignment(self) -> set[TopicPartition]:
        return set()


def make_writer(
    consumer: FakeConsumer | None = None,
) -> tuple[Writer, InMemoryWriterStore, FakeProducer, FakeConsumer]:
    store, producer, consumer = InMemoryWriterStore(), FakeProducer(), consumer or FakeConsumer()
    settings = WriterSettings(retry_initial_s=0.001, retry_max_s=0.01, batch_max_ms=5, gc_gen0_threshold=0)
    writer = Writer(settings, consumer, producer, store)  # type: ignore[arg-type]
    consumer.writer = writer
    return writer, store, producer, consumer


def records(tenant: str, *names: str) -> list[Incoming]:
    return [
        as_incoming(make_record(tenant, agreement_id=i + 1, name=n), CONTRACT_RECORDS)
        for i, n in enumerate(names)
    ]


async def test_a_record_the_database_refuses_is_dead_lettered_alone_and_the_rest_of_its_batch_applies() -> (
    None
):
    writer, store, producer, consumer = make_writer()
    tenant = unique_tenant()
    batch = records(tenant, "one", "two", "bad\x00name", "four", "five")
    result = await writer.process(batch)
    assert sum(c.created for c in result.applied.values()) == 4
    assert len(store.state.contracts) == 4
    dead = [(t, v, dict(h)) for t, v, h in producer.sent if any(k == DLQ_REASON for k, _ in h)]
    assert [(t, v) for t, v, _ in dead] == [(writer.settings.deadletter_topic, batch[2].value)]
    assert dead[0][2][DLQ_REASON] == b"db_rejected"
    assert "sync.failed" in producer.types()
    assert consumer.commits[-1] == {TopicPartition(CONTRACT_RECORDS, 0): batch[-1].offset + 1}
    assert store.state.outbox == []


async def test_messages_kafka_refused_stay_in_the_outbox_and_go_out_first_with_the_next_batch() -> None:
    writer, store, producer, _ = make_writer()
    tenant = unique_tenant()
    producer.failing = True
    await writer.process(records(tenant, "one"))
    assert producer.sent == []
    left = list(store.state.outbox)
    assert left and [m.topic for m in left] == [writer.settings.events_topic] * len(left)
    producer.failing = False
    second = await writer.process([as_incoming(make_record(tenant, agreement_id=2), CONTRACT_RECORDS)])
    assert [v for _, v, _ in producer.sent] == [m.value for m in (*left, *second.outbox)]
    assert store.state.outbox == []


async def test_a_batch_is_retried_while_the_database_is_unavailable_and_then_applied_once() -> None:
    writer, store, producer, consumer = make_writer()
    store.unavailable = 3
    result = await writer.process(records(unique_tenant(), "one", "two"))
    assert sum(c.created for c in result.applied.values()) == 2
    assert len(store.applied_plans) == 1
    assert len(consumer.commits) == 1
    # the client heard once (not once per retry) that its sync is failing, then that it applied
    assert producer.types() == ["sync.failed", "sync.contracts.applied"]


async def test_messages_left_in_the_outbox_are_published_oldest_first_at_start_and_deleted() -> None:
    writer, store, producer, _ = make_writer()
    producer.failing = True
    tenant = unique_tenant()
    await writer.process(records(tenant, "one"))
    await writer.process([as_incoming(make_record(tenant, agreement_id=2), CONTRACT_RECORDS)])
    left = list(store.state.outbox)
    restarted = Writer(writer.settings, FakeConsumer(), FakeProducer(), store)  # type: ignore[arg-type]
    assert await restarted.recover_outbox() == len(left)
    assert [v for _, v, _ in restarted.producer.sent] == [m.value for m in left]  # type: ignore[attr-defined]
    assert store.state.outbox == []


async def test_the_pipelined_loop_applies_batches_in_order_and_commits_each_after_it_applied() -> None:
    tenant = unique_tenant()
    first = records(tenant, "one", "two")
    second = [as_incoming(make_record(tenant, agreement_id=n), CONTRACT_RECORDS) for n in (3, 4)]
    third = [as_incoming(make_record(tenant, agreement_id=1, name="one again"), CONTRACT_RECORDS)]
    writer, store, producer, consumer = make_writer(FakeConsumer([first, second, third]))
    await writer.run()
    assert [[a.message.offset for a in p.events] for p in store.applied_plans] == [
        [m.offset for m in batch] for batch in (first, second, third)
    ]
    assert [c[TopicPartition(CONTRACT_RECORDS, 0)] for c in consumer.commits] == [
        batch[-1].offset + 1 for batch in (first, second, third)
    ]
    assert store.state.contracts[f"cw:{tenant}:agreement:1"].values["psa_name"] == "one again"
    assert producer.types().count("sync.contracts.applied") == 3
    assert store.state.outbox == []
