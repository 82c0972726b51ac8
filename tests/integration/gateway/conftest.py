"""One gateway process for the module's tests, on topics of its own, with two tenants' data seeded
into the real PostgreSQL (the same client id `100` in both tenants, so tenancy is tested where ids
collide; client `200` exists only in tenant B, `300` only in A with auto-sync on)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from gateway_support import (
    GatewayProcess,
    GatewayRig,
    TokenFactory,
    create_topics,
    delete_topics,
    seed,
    unseed,
)


@pytest.fixture(scope="module")
def rig(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayRig]:
    run = secrets.token_hex(4)
    commands_topic, events_topic = f"gw-{run}.sync.commands.v1", f"gw-{run}.sync.events.v1"
    asyncio.run(create_topics(kafka_bootstrap, [commands_topic, events_topic]))
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
        asyncio.run(delete_topics(kafka_bootstrap, [commands_topic, events_topic]))
