"""Fixtures of the writer's integration tests: a migrated database, per-test topics, a running writer."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "writer"))

from services.common.db import migrate
from services.common.db.roles import WRITER, role_url
from services.writer.store import PostgresStore


@pytest.fixture(scope="session")
def migrated_url(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture
def store(migrated_url: str) -> Iterator[PostgresStore]:
    """The writer's store, connected as the writer's role."""
    store = PostgresStore(role_url(migrated_url, WRITER))
    yield store
    store.close()


@pytest.fixture
async def writer_topics(kafka_bootstrap: str) -> AsyncIterator[dict[str, str]]:
    """Fresh topics (3 partitions) standing in for the writer's inputs and outputs; deleted afterwards."""
    run = uuid.uuid4().hex[:10]
    topics = {name: f"test.writer.{name}.{run}" for name in ("records", "psa", "commands", "events", "dlq")}
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 3, 1) for t in topics.values()])
        yield topics
    finally:
        try:
            await admin.delete_topics(list(topics.values()))
        finally:
            await admin.close()
