from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# the store contract suite shared with the unit tests (tests/unit/poller/poller_store_contract.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "poller"))
from poller_support import KafkaTap
from sqlalchemy import create_engine, text

from devtools.cwsim.testing import SimHandle, run_simulator
from services.common.db.roles import POLLER, role_url
from services.common.kafka import new_producer
from services.common.settings import KafkaSettings
from services.poller.publisher import KafkaPublisher
from services.poller.store import PostgresPollerStore


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    with run_simulator(companies=3, agreements_per_company=4, additions_per_agreement=2) as handle:
        yield handle


@pytest.fixture(scope="session")
def poller_store(database_url: str) -> Iterator[PostgresPollerStore]:
    store = PostgresPollerStore.from_url(role_url(database_url, POLLER))
    yield store
    store.dispose()


@pytest.fixture(autouse=True)
def forget_test_tenants(database_url: str) -> Iterator[None]:
    """Delete the poller rows of the tenants a test created (their ids start with it-, proc-, kill-)."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        before = {r[0] for r in connection.execute(text("SELECT DISTINCT tenant_id FROM poller_cursors"))}
    yield
    with engine.begin() as connection:
        after = {r[0] for r in connection.execute(text("SELECT DISTINCT tenant_id FROM poller_cursors"))}
        for tenant_id in after - before:
            if tenant_id.startswith(("it-", "proc-", "kill-")):
                for table in ("poller_snapshots", "poller_cursors"):
                    connection.execute(text(f"DELETE FROM {table} WHERE tenant_id = :t"), {"t": tenant_id})
    engine.dispose()


@pytest.fixture
async def kafka_publisher(kafka_bootstrap: str) -> AsyncIterator[KafkaPublisher]:
    producer = new_producer(KafkaSettings(bootstrap_servers=kafka_bootstrap))
    await producer.start()
    yield KafkaPublisher(producer)
    await producer.stop()


@pytest.fixture
async def tap(kafka_bootstrap: str) -> AsyncIterator[KafkaTap]:
    t = KafkaTap(kafka_bootstrap)
    await t.start()
    yield t
    await t.stop()
