"""The mapper accepts the state stores it runs on and refuses any other when it reads its settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.mapper.settings import MapperSettings


def test_the_memory_store_is_the_default_and_accepted() -> None:
    assert MapperSettings().store == "memory://"
    assert MapperSettings(store="memory://").store == "memory://"


def test_the_rocksdb_store_is_accepted() -> None:
    assert MapperSettings(store="rocksdb://").store == "rocksdb://"


@pytest.mark.parametrize("store", ["aerospike://", "redis://localhost", "dict"])
def test_a_store_the_mapper_cannot_run_on_is_refused_with_the_reason(store: str) -> None:
    with pytest.raises(ValidationError, match=r"not supported.*use memory:// or rocksdb://"):
        MapperSettings(store=store)


def test_the_store_setting_is_checked_when_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAPPER_STORE", "aerospike://")
    with pytest.raises(ValidationError, match="MAPPER_STORE='aerospike://' is not supported"):
        MapperSettings()
