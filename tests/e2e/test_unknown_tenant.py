"""Commands for a tenant nobody configured (docs/design.md#ground-rules; docs/chaos.md finding 2) on the running
pipeline, whose mapper and writer get the poller's tenants file as their registry: each command is
dead-lettered once (`unknown_tenant`), answered with `sync.command.rejected`, and the writer, which
has consumed past them, stored nothing for the ghost tenant."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from e2e_support import E2E, REQUESTED_BY, KafkaTail, TailRecord, kafka_client

from schemas.commands import (
    EditCommand,
    EditData,
    RefreshCommand,
    RefreshData,
    SelectCommand,
    SelectData,
    SetAutoSyncCommand,
    SetAutoSyncData,
)
from schemas.envelope import CloudEvent
from schemas.topics import DEADLETTER, DLQ_REASON, DLQ_STAGE, SYNC_COMMANDS, SYNC_EVENTS
from services.writer.settings import WriterSettings

SOURCE = "e2e-tests"


def ghost_commands(ghost: str, client: str) -> list[CloudEvent]:
    common = {"tenant_id": ghost, "client_id": client, "requested_by": REQUESTED_BY}
    return [
        SetAutoSyncCommand.build(SetAutoSyncData(**common, enabled=True), source=SOURCE),
        SelectCommand.build(SelectData(**common, agreement_ids=[1]), source=SOURCE),
        RefreshCommand.build(RefreshData(**common), source=SOURCE),
        EditCommand.build(
            EditData(**common, contract_id=f"cw:{ghost}:agreement:1", changes={"notes": "x"}), source=SOURCE
        ),
    ]


def send_all(e2e: E2E, commands: list[CloudEvent]) -> dict[TopicPartition, int]:
    """Produce the commands; returns the highest offset written per partition."""

    async def send() -> dict[TopicPartition, int]:
        producer = AIOKafkaProducer(**kafka_client(e2e), acks="all")
        await producer.start()
        try:
            last: dict[TopicPartition, int] = {}
            for command in commands:
                meta = await producer.send_and_wait(
                    e2e.pipeline.topic(SYNC_COMMANDS), command.to_bytes(), key=command.key
                )
                tp = TopicPartition(meta.topic, meta.partition)
                last[tp] = max(last.get(tp, -1), meta.offset)
            return last
        finally:
            await producer.stop()

    return asyncio.run(send())


def writer_consumed_past(e2e: E2E, last: dict[TopicPartition, int]) -> bool:
    async def committed() -> bool:
        consumer = AIOKafkaConsumer(
            **kafka_client(e2e),
            group_id=e2e.pipeline.env.get("WRITER_GROUP_ID", WriterSettings().group_id),
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            for tp, offset in last.items():
                if ((await consumer.committed(tp)) or 0) <= offset:
                    return False
            return True
        finally:
            await consumer.stop()

    return asyncio.run(committed())


def test_commands_for_an_unconfigured_tenant_are_dead_lettered_once_rejected_and_never_stored(
    e2e: E2E,
) -> None:
    # Not derived from the session tenant: the session's tails (and the tests reading them) keep
    # only that tenant's records, so this test reads the ghost's records with tails of its own.
    ghost = f"ghost-{secrets.token_hex(4)}"
    key_prefix = f"{ghost}:".encode()
    bootstrap = e2e.pipeline.options.kafka_bootstrap

    def keep(record: TailRecord) -> bool:
        return (record.key or b"").startswith(key_prefix)

    events_tail = KafkaTail(bootstrap, e2e.pipeline.topic(SYNC_EVENTS), keep)
    deadletter_tail = KafkaTail(bootstrap, e2e.pipeline.topic(DEADLETTER), keep)
    try:
        commands = ghost_commands(ghost, "250")
        last = send_all(e2e, commands)
        ids = {str(c.id) for c in commands}
        values = {c.to_bytes() for c in commands}

        def all_rejected() -> list[dict[str, Any]] | None:
            found = [
                event
                for event in (r.json() for r in events_tail.records())
                if event["type"] == "sync.command.rejected" and event.get("correlationid") in ids
            ]
            return found if len(found) >= len(commands) else None

        rejections = e2e.wait_for("four rejections", all_rejected)
        assert sorted(r["data"]["command_type"] for r in rejections) == sorted(c.type for c in commands)
        assert {r["data"]["reason"] for r in rejections} == {"unknown_tenant"}
        assert {r["data"]["tenant_id"] for r in rejections} == {ghost}

        def all_dead_lettered() -> list[TailRecord] | None:
            found = [r for r in deadletter_tail.records() if r.value in values]
            return found if len(found) >= len(commands) else None

        e2e.wait_for("four dead letters", all_dead_lettered)
        e2e.wait_for("the writer consumed past the commands", lambda: writer_consumed_past(e2e, last))
        time.sleep(1.0)  # a duplicate dead letter (the writer's) would be published right after its commit
        letters = deadletter_tail.records()
        assert len(letters) == len(commands)  # one dead letter per command: the mapper's
        assert {r.value for r in letters} == values
        assert {(r.headers[DLQ_REASON], r.headers[DLQ_STAGE]) for r in letters} == {
            (b"unknown_tenant", b"mapper.tenant")
        }
        # the ghost got rejections, nothing else (no sync.auto_sync.changed, no edit rejection)
        assert {r.json()["type"] for r in events_tail.records()} == {"sync.command.rejected"}
    finally:
        events_tail.close()
        deadletter_tail.close()

    with e2e.pipeline.engine.connect() as connection:
        stored = {
            table: connection.execute(
                sa.text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"),
                {"t": ghost},
            ).scalar_one()
            for table in ("client_sync_settings", "contracts", "catalog_items")
        }
    assert stored == {"client_sync_settings": 0, "contracts": 0, "catalog_items": 0}
    assert all(e2e.pipeline.alive().values()), e2e.pipeline.alive()
