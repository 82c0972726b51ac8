"""`PostgresPollerStore` keeps the port's contract on a real PostgreSQL (the same suite runs against
the unit tests' in-memory fake in tests/unit/poller/test_poller_store_contract_in_memory.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from poller_store_contract import PollerStoreContract

from services.common.db import migrate
from services.poller.store import PostgresPollerStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(database_url: str) -> Iterator[PostgresPollerStore]:
    migrate(database_url)
    store = PostgresPollerStore.from_url(database_url)
    yield store
    store.dispose()


class TestPostgresPollerStore(PollerStoreContract):
    pass
