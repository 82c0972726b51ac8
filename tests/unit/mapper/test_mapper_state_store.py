"""The state backends (`memory://`, `rocksdb://`) keep one contract; the worker's StateStore writes
to them only what its changelog acknowledged; the lazy per-client index answers like the full one."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from mapper_factories import select, snapshot

from services.common.settings import KafkaSettings
from services.mapper.app import MapperApp
from services.mapper.client_state import ClientIndex, ItemState
from services.mapper.gap_reader import RawMessage
from services.mapper.output_producer import OutMessage
from services.mapper.settings import MapperSettings
from services.mapper.state_store import (
    LazyClientIndex,
    MemoryBackend,
    RocksBackend,
    StateBackend,
    open_backend,
)
from services.mapper.table_store import StateStore


@pytest.fixture(params=["memory", "rocksdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateBackend]:
    store: StateBackend = MemoryBackend() if request.param == "memory" else RocksBackend(tmp_path / "db")
    yield store
    store.close()


def test_a_backend_applies_puts_deletes_and_checkpoints_of_one_write(backend: StateBackend) -> None:
    backend.write({"t:c|auto": b"1", "t:c|i|1": b"one", "t:c|i|2": b"two"}, {0: 3})
    backend.write({"t:c|i|1": None, "t:c|i|2": b"TWO"}, {0: 5, 1: 2})

    assert backend.get("t:c|i|1") is None
    assert backend.get("t:c|i|2") == b"TWO"
    assert backend.get("absent") is None
    assert (backend.checkpoint(0), backend.checkpoint(1), backend.checkpoint(2)) == (5, 2, None)


def test_a_backend_scans_a_prefix_in_key_order_and_never_lists_checkpoints(backend: StateBackend) -> None:
    backend.write({"t:c|i|2": b"b", "t:c|i|10": b"c", "t:c1|i|1": b"other", "t:c|auto": b"1"}, {0: 9})

    assert list(backend.scan("t:c|i|")) == [("t:c|i|10", b"c"), ("t:c|i|2", b"b")]
    assert sorted(backend.state_keys()) == ["t:c1|i|1", "t:c|auto", "t:c|i|10", "t:c|i|2"]
    assert backend.count() == 4


def test_a_cleared_backend_holds_no_key_and_no_checkpoint(backend: StateBackend) -> None:
    backend.write({"t:c|auto": b"1"}, {0: 4})
    backend.clear()
    assert backend.get("t:c|auto") is None
    assert backend.checkpoint(0) is None
    assert backend.count() == 0


def test_the_rocksdb_backend_keeps_state_and_checkpoints_across_a_reopen(tmp_path: Path) -> None:
    first = open_backend("rocksdb://", tmp_path)
    first.write({"t:c|auto": b"1"}, {1: 42})
    first.close()

    again = open_backend("rocksdb://", tmp_path)
    try:
        assert again.persistent
        assert again.get("t:c|auto") == b"1"
        assert again.checkpoint(1) == 42
    finally:
        again.close()
    assert not open_backend("memory://", tmp_path).persistent


def _item(additions: list[int]) -> bytes:
    return ItemState(version="2025-01-01T00:00:00+00:00", additions=additions, snapshot=b"{}").encode()


def test_the_lazy_index_answers_like_the_full_index_with_few_clients_cached(tmp_path: Path) -> None:
    rng = random.Random(7)
    backend = RocksBackend(tmp_path / "db")
    store = StateStore(backend, "changelog")
    assert isinstance(store.index, LazyClientIndex)
    store.index = LazyClientIndex(store._client_items, max_clients=3)
    full = ClientIndex()
    clients = [f"t:{n}" for n in range(8)]
    for step in range(400):
        client, agreement = rng.choice(clients), rng.randrange(1, 12)
        additions = tuple(rng.sample(range(100, 130), rng.randrange(0, 4)))
        key, value = f"{client}|i|{agreement}", _item(list(additions))
        store[key] = value
        full.on_write(key, value)
        if step % 50 == 0:
            store.keep()  # some writes reach the backend, others stay pending
        probe = rng.choice(clients)
        assert store.index.agreements(probe) == full.agreements(probe)
        for addition in range(100, 130):
            assert store.index.owner(probe, addition) == full.owner(probe, addition)
    assert isinstance(store.index, LazyClientIndex)
    assert store.index.cached_clients <= 3
    backend.close()


def test_the_store_writes_nothing_locally_until_its_changelog_is_acknowledged(tmp_path: Path) -> None:
    backend = RocksBackend(tmp_path / "db")
    store = StateStore(backend, "app-state-changelog")
    store.partition = 1
    store["t:c|auto"] = b"1"
    store.put_position("psa.agreements.v1", 1, 8)

    assert store["t:c|auto"] == b"1"  # the batch reads its own changes
    assert backend.get("t:c|auto") is None  # a crash here leaves the previous state
    pending = store.take_pending()
    assert [(m.topic, m.key, m.value, m.partition) for m in pending] == [
        ("app-state-changelog", b'"t:c|auto"', b"1", 1),
        ("app-state-changelog", b'"~pos|psa.agreements.v1|1"', b"8", 1),
    ]
    store.written({("app-state-changelog", 1): 17, ("contracts.records.v1", 1): 99})
    store.keep()
    assert backend.get("t:c|auto") == b"1"
    assert backend.checkpoint(1) == 17  # one write: the state and the changelog offset it reaches
    assert backend.checkpoint(0) is None

    store["t:c|auto"] = b"0"
    store.discard()
    assert store["t:c|auto"] == b"1"
    assert store.take_pending() == []
    backend.close()


@pytest.mark.parametrize("kind", ["memory://", "rocksdb://"])
async def test_the_worker_decides_the_same_on_either_store(tmp_path: Path, kind: str) -> None:
    mapper = MapperApp(
        MapperSettings(app_id="unit-store", datadir=str(tmp_path), partitions=2, store=kind),
        KafkaSettings(bootstrap_servers="127.0.0.1:1"),
    )
    mapper._recovered = lambda: True  # type: ignore[method-assign]
    produced: list[OutMessage] = []

    async def sent(messages: list[OutMessage]) -> dict[tuple[str, int], int]:
        produced.extend(messages)
        return {}

    mapper.output.produce_all = sent  # type: ignore[method-assign]
    observed, chosen = snapshot(1, [11, 12]), select([], [12])
    await mapper._handle_messages(
        [
            RawMessage("psa.agreements.v1", 0, 0, observed.key, observed.to_bytes()),
            RawMessage("sync.commands.v1", 0, 0, chosen.key, chosen.to_bytes()),
        ]
    )
    records = [m for m in produced if m.topic == "contracts.records.v1"]
    assert len(records) == 1 and b'"addition_id":12' in (records[0].value or b"")
    assert mapper.store.position("psa.agreements.v1", 0) == 1
    assert mapper.backend.get(f"{observed.subject}|i|1") is not None
    mapper.backend.close()
