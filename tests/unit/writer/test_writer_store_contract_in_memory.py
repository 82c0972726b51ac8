"""The in-memory `WriterStore` of the unit tests keeps the port's contract (the same suite runs
against PostgreSQL in tests/integration/writer/test_writer_store_contract_postgres.py)."""

from __future__ import annotations

import pytest
from writer_fakes import InMemoryWriterStore
from writer_store_contract import WriterStoreContract


class TestInMemoryWriterStore(WriterStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryWriterStore:
        return InMemoryWriterStore()
