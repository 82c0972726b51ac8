"""One gateway process for the module's tests, on topics of its own, with two tenants' data seeded
into the real PostgreSQL (the same client id `100` in both tenants, so tenancy is tested where ids
collide; client `200` exists only in tenant B, `300` only in A with auto-sync on)."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from gateway_support import GatewayProcess, TokenFactory

from services.common.db.tables import catalog_items, client_sync_settings, contracts

PARTITIONS = 3


@dataclass
class Seeded:
    tenant: str
    clients: list[str]
    agreement_key: str
    addition_key: str
    new_agreement_key: str


@dataclass
class GatewayRig:
    gateway: GatewayProcess
    tokens: TokenFactory
    a: Seeded
    b: Seeded
    kafka_bootstrap: str
    commands_topic: str
    events_topic: str
    engine: sa.Engine

    @property
    def url(self) -> str:
        return self.gateway.url

    def published_commands(self) -> list[dict[str, Any]]:
        """Every command on the gateway's commands topic so far."""
        return [json.loads(v) for v in asyncio.run(_read_all(self.kafka_bootstrap, self.commands_topic))]

    def produce_events(self, events: list[dict[str, Any]]) -> None:
        asyncio.run(_produce(self.kafka_bootstrap, self.events_topic, events))


async def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        values: list[bytes] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(timeout_ms=1000)
            values.extend(r.value or b"" for records in batch.values() for r in records)
        return values
    finally:
        await consumer.stop()


async def _produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic, json.dumps(event).encode(), key=event["subject"].encode())
    finally:
        await producer.stop()


async def _create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=PARTITIONS, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


async def _delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


def seed(engine: sa.Engine, tenant: str, clients: list[str], auto_sync_client: str | None) -> Seeded:
    now = datetime.now(UTC)
    older = now - timedelta(days=2)
    agreement_key = f"cw:{tenant}:agreement:1"
    addition_key = f"cw:{tenant}:addition:11"
    new_key = f"cw:{tenant}:agreement:2"
    main_client = clients[0]
    with engine.begin() as conn:
        conn.execute(
            sa.insert(catalog_items),
            [
                {
                    "contract_key": agreement_key, "tenant_id": tenant, "client_id": main_client,
                    "kind": "agreement", "agreement_id": 1, "addition_id": None, "name": f"Managed {tenant}",
                    "summary": {"bill_amount": "100.00", "currency": "USD", "billing_cycle": "Monthly",
                                "start_date": "2024-01-01T00:00:00Z"},
                    "psa_last_updated": older, "observed_at": now,
                },
                {
                    "contract_key": addition_key, "tenant_id": tenant, "client_id": main_client,
                    "kind": "addition", "agreement_id": 1, "addition_id": 11, "name": "Backup seats",
                    "summary": {"quantity": "12", "less_included": "0", "unit_price": "5.00",
                                "bill_customer": "Billable", "effective_date": "2024-01-01T00:00:00Z"},
                    "psa_last_updated": now, "observed_at": now,
                },
                {
                    "contract_key": new_key, "tenant_id": tenant, "client_id": main_client,
                    "kind": "agreement", "agreement_id": 2, "addition_id": None, "name": "New agreement",
                    "summary": {"bill_amount": "10.00", "currency": "USD"},
                    "psa_last_updated": now, "observed_at": now,
                },
            ]
            + [
                {
                    "contract_key": f"cw:{tenant}:agreement:{100 + i}", "tenant_id": tenant, "client_id": client,
                    "kind": "agreement", "agreement_id": 100 + i, "addition_id": None, "name": f"Other {client}",
                    "summary": {}, "psa_last_updated": now, "observed_at": now,
                }
                for i, client in enumerate(clients[1:])
            ],
        )  # fmt: skip
        common = {"tenant_id": tenant, "client_id": main_client, "psa": "connectwise", "psa_synced": True,
                  "psa_last_updated": older, "status": "active", "billing_currency": "USD",
                  "billing_cycle": "monthly", "psa_start_date": datetime(2024, 1, 1).date(),
                  "start_date": datetime(2024, 1, 1).date(), "category": "recurring",
                  "explanation": {"status": "agreementStatus Active -> active"}}  # fmt: skip
        conn.execute(
            sa.insert(contracts),
            [
                {**common, "contract_key": agreement_key, "kind": "agreement", "agreement_id": 1, "addition_id": None,
                 "parent_contract_key": None,
                 "name": f"Managed {tenant}", "psa_name": f"Managed {tenant}", "billing_amount": "100.00"},
                {**common, "contract_key": addition_key, "kind": "addition", "agreement_id": 1, "addition_id": 11,
                 "parent_contract_key": agreement_key, "name": "Backup seats", "psa_name": "Backup seats",
                 "billing_amount": "50.00"},
            ],
        )  # fmt: skip
        rows = [{"tenant_id": tenant, "client_id": main_client, "auto_sync": False, "last_synced_at": older}]
        if auto_sync_client:
            rows.append(
                {
                    "tenant_id": tenant,
                    "client_id": auto_sync_client,
                    "auto_sync": True,
                    "last_synced_at": None,
                }
            )
        conn.execute(sa.insert(client_sync_settings), rows)
    return Seeded(tenant, clients, agreement_key, addition_key, new_key)


def unseed(engine: sa.Engine, tenant: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL contract_sync.sync_path = 'on'"))
        for table in ("contracts", "catalog_items", "client_sync_settings", "gateway_commands",
                      "gateway_command_events"):  # fmt: skip
            conn.execute(sa.text(f"DELETE FROM {table} WHERE tenant_id = :t"), {"t": tenant})


@pytest.fixture(scope="module")
def rig(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayRig]:
    run = secrets.token_hex(4)
    commands_topic, events_topic = f"gw-{run}.sync.commands.v1", f"gw-{run}.sync.events.v1"
    asyncio.run(_create_topics(kafka_bootstrap, [commands_topic, events_topic]))
    engine = sa.create_engine(database_url)
    tenant_a, tenant_b = f"gwa-{run}", f"gwb-{run}"
    a = seed(engine, tenant_a, ["100", "300"], auto_sync_client="300")
    b = seed(engine, tenant_b, ["100", "200"], auto_sync_client=None)
    gateway = GatewayProcess(
        Path(tmp_path_factory.mktemp("gateway")),
        kafka_bootstrap=kafka_bootstrap,
        database_url=database_url,
        commands_topic=commands_topic,
        events_topic=events_topic,
        group_id=f"gw-test-{uuid.uuid4().hex[:8]}",
    )
    try:
        gateway.start()
        yield GatewayRig(gateway, TokenFactory(gateway.keys), a, b, kafka_bootstrap, commands_topic, events_topic,
                         engine)  # fmt: skip
    finally:
        gateway.stop()
        unseed(engine, tenant_a)
        unseed(engine, tenant_b)
        engine.dispose()
        asyncio.run(_delete_topics(kafka_bootstrap, [commands_topic, events_topic]))
