"""`AsyncPostgresStore` keeps the writer store port's contract on a real PostgreSQL (the same suite
runs against the unit tests' in-memory fake in tests/unit/writer/test_writer_store_contract_in_memory.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from writer_store_contract import WriterStoreContract

from services.writer.store import AsyncPostgresStore

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(migrated_url: str) -> AsyncIterator[AsyncPostgresStore]:
    store = AsyncPostgresStore(migrated_url)
    yield store
    await store.close()


class TestAsyncPostgresWriterStore(WriterStoreContract):
    pass
