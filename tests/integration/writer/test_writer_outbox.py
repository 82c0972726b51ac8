"""The writer's transactional outbox on real Kafka and PostgreSQL: a crash after the database commit
and before Kafka acknowledged the batch's events loses none of them; bad commands are the mapper's
to dead-letter."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg
from prometheus_client import REGISTRY
from writer_factories import make_edit, make_record, unique_tenant
from writer_helpers import eventually, produce, read_all, running_writer, writer_settings

from schemas.topics import DLQ_REASON, DLQ_SOURCE_TOPIC, SYNC_EVENTS, parse
from services.common.kafka import new_consumer, new_producer
from services.common.settings import KafkaSettings
from services.writer.consumer import Writer
from services.writer.handlers import OutboxMessage
from services.writer.settings import WriterSettings
from services.writer.store import AsyncPostgresStore, StoreOptions


class SimulatedCrash(Exception):
    """Stands for the process dying between the database commit and the broker's acknowledgement."""


class CrashingBeforePublish(Writer):
    """A writer that 'dies' the first time it has committed messages to publish (fault injection)."""

    async def publish_outbox(self, messages: Sequence[OutboxMessage], *, delete: bool = True) -> bool:
        if messages:
            raise SimulatedCrash
        return await super().publish_outbox(messages, delete=delete)


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def outbox_rows(url: str, topics: list[str]) -> int:
    with psycopg.connect(_dsn(url), connect_timeout=2) as conn:
        row = conn.execute("SELECT count(*) FROM writer_outbox WHERE topic = ANY(%s)", (topics,)).fetchone()
    assert row is not None
    return int(row[0])


def contracts_of(url: str, tenant: str) -> int:
    with psycopg.connect(_dsn(url), connect_timeout=2) as conn:
        row = conn.execute("SELECT count(*) FROM contracts WHERE tenant_id = %s", (tenant,)).fetchone()
    assert row is not None
    return int(row[0])


async def crash_once(kafka_bootstrap: str, database_url: str, settings: WriterSettings) -> None:
    """Run a `CrashingBeforePublish` writer until it crashes; close its clients without committing."""
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    consumer = new_consumer(
        kafka, settings.records_topic, settings.psa_topic, settings.commands_topic, group_id=settings.group_id
    )
    producer = new_producer(kafka)
    store = AsyncPostgresStore(database_url, StoreOptions(connect_timeout_s=2))
    writer = CrashingBeforePublish(settings, consumer, producer, store)
    await producer.start()
    await consumer.start()
    try:
        task = asyncio.create_task(writer.run())
        done, _ = await asyncio.wait({task}, timeout=60)
        assert task in done, "the writer never reached the publish step"
        assert isinstance(task.exception(), SimulatedCrash)
    finally:
        await consumer.stop()
        await producer.stop()
        await store.close()


async def test_events_of_a_batch_committed_just_before_a_crash_are_published_after_the_restart(
    kafka_bootstrap: str, migrated_url: str, writer_topics: dict[str, str]
) -> None:
    tenant = unique_tenant()
    records = [make_record(tenant, "100", i) for i in (1, 2)] + [make_record(tenant, "200", 3)]
    invalid = make_record(tenant, "100", 9).to_bytes().replace(b'"status":"active"', b'"status":"bogus"')
    poison = (records[0].key, invalid)
    await produce(kafka_bootstrap, writer_topics["records"], [*records, poison])
    settings = writer_settings(writer_topics)
    ours = [writer_topics["events"], writer_topics["dlq"]]

    await crash_once(kafka_bootstrap, migrated_url, settings)
    # a batch is committed in PostgreSQL with the messages it owes, and none reached Kafka
    left = outbox_rows(migrated_url, ours)
    assert left >= 1
    assert await read_all(kafka_bootstrap, writer_topics["events"], expect=0, timeout_s=1) == []

    async with running_writer(kafka_bootstrap, migrated_url, settings):  # same group: replays
        await eventually(
            lambda: contracts_of(migrated_url, tenant) == 3 and outbox_rows(migrated_url, ours) == 0
        )
        await asyncio.sleep(0.3)  # let a replayed batch finish too
        events = [
            parse(SYNC_EVENTS, r.value)
            for r in await read_all(kafka_bootstrap, writer_topics["events"], expect=left)
        ]
        dead = await read_all(kafka_bootstrap, writer_topics["dlq"], expect=1)

    assert outbox_rows(migrated_url, ours) == 0
    applied = [e for e in events if e.type == "sync.contracts.applied"]
    created: Counter[str] = Counter()
    for e in applied:
        created[e.data.client_id] += e.data.created
    assert created == Counter({"100": 2, "200": 1})  # each contract's creation reported once
    assert len({e.id for e in applied}) == len(applied)  # exactly once: the replay applied nothing new
    # the poison message is re-read (its offset was never committed) and dead-lettered again: its
    # `sync.failed` repeats the same CloudEvent id, so consumers de-duplicate it
    failed = [e for e in events if e.type == "sync.failed"]
    assert len(failed) >= 1 and len({e.id for e in failed}) == 1
    assert {r.value for r in dead} == {invalid}
    assert all(e.tenantid == tenant for e in events)


async def test_unreadable_commands_are_skipped_without_a_dead_letter_of_the_writer(
    kafka_bootstrap: str, migrated_url: str, writer_topics: dict[str, str]
) -> None:
    tenant = unique_tenant()
    record = make_record(tenant)
    edit = make_edit(tenant, "100", record.data.contract_key, {"notes": "after the bad ones"})
    await produce(kafka_bootstrap, writer_topics["records"], [record])
    await produce(
        kafka_bootstrap,
        writer_topics["commands"],
        [(edit.key, b"{not json"), (edit.key, b'{"type": "sync.command.explode", "data": {}}'), edit],
    )
    await produce(kafka_bootstrap, writer_topics["records"], [(record.key, b"{not json either")])

    def skipped() -> float:
        return REGISTRY.get_sample_value("writer_skipped_unparseable_total") or 0.0

    before = skipped()
    async with running_writer(kafka_bootstrap, migrated_url, writer_settings(writer_topics)) as writer:
        await eventually(lambda: writer.applied_messages == 2)
        dead = await read_all(kafka_bootstrap, writer_topics["dlq"], expect=1)
    sources: Counter[Any] = Counter(dict(r.headers)[DLQ_SOURCE_TOPIC].decode() for r in dead)
    assert sources == Counter({writer_topics["records"]: 1})  # only the writer's own topic
    assert dict(dead[0].headers)[DLQ_REASON] == b"malformed_json"
    assert skipped() - before == 2
    # every published message's row was deleted (some inside a later batch's transaction, the rest on stop)
    assert outbox_rows(migrated_url, [writer_topics["events"], writer_topics["dlq"]]) == 0
