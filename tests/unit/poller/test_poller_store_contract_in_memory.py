"""The in-memory `PollerStore` of the unit tests keeps the port's contract (the same suite runs
against PostgreSQL in tests/integration/poller/test_poller_store_contract_postgres.py)."""

from __future__ import annotations

import pytest
from poller_fakes import InMemoryStore
from poller_store_contract import PollerStoreContract


class TestInMemoryPollerStore(PollerStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryStore:
        return InMemoryStore()
