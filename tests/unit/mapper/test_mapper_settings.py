"""The mapper refuses a table store it cannot run on when it reads its settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.mapper.settings import MapperSettings


def test_the_memory_store_is_the_default_and_accepted() -> None:
    assert MapperSettings().store == "memory://"
    assert MapperSettings(store="memory://").store == "memory://"


@pytest.mark.parametrize("store", ["rocksdb://", "rocksdb:///var/lib/mapper", "aerospike://"])
def test_a_store_the_mapper_cannot_write_through_is_refused_with_the_reason(store: str) -> None:
    with pytest.raises(ValidationError, match=r"not supported.*use memory://"):
        MapperSettings(store=store)


def test_the_store_setting_is_checked_when_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAPPER_STORE", "rocksdb://")
    with pytest.raises(ValidationError, match="MAPPER_STORE='rocksdb://' is not supported"):
        MapperSettings()
