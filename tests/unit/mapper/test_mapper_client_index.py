"""A command costs what its client holds, never what the store holds (`services.mapper.state.ClientIndex`).

The mapper answers "which agreement lists addition X" and "which agreements has this client" from
a per-client index that follows every write, not by scanning the store's keys; the worker's batch
loop gives the event loop a turn between messages, so a long batch never silences the health probe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path

import pytest
from mapper_factories import TENANT, select, set_auto_sync, snapshot

from schemas.envelope import CloudEvent
from schemas.records import ContractRecordMapped
from schemas.topics import PSA_AGREEMENTS, SYNC_COMMANDS
from services.common.settings import KafkaSettings
from services.mapper import app as app_module
from services.mapper.app import MapperApp
from services.mapper.client_state import ClientIndex, IndexedStore
from services.mapper.gap_reader import RawMessage
from services.mapper.messages import Emit, Incoming, Output
from services.mapper.output_producer import OutMessage
from services.mapper.settings import MapperSettings
from services.mapper.state import decide


class CountingDict(MutableMapping[str, bytes]):
    """A store that counts how many keys were listed (a scan) and how many values were read."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.keys_listed = 0
        self.reads = 0

    def __getitem__(self, key: str) -> bytes:
        self.reads += 1
        return self.data[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        self.keys_listed += len(self.data)
        return iter(list(self.data))

    def __len__(self) -> int:
        return len(self.data)


def _send(store: MutableMapping[str, bytes], event: CloudEvent, offset: int = 0) -> list[Output]:
    topic = SYNC_COMMANDS if event.type.startswith("sync.command") else PSA_AGREEMENTS
    return decide(store, Incoming(topic, 0, offset, event.key, event.to_bytes())).outputs


def _mapped_keys(outputs: list[Output]) -> list[str]:
    return [
        o.event.data.contract_key
        for o in outputs
        if isinstance(o, Emit) and isinstance(o.event, ContractRecordMapped)
    ]


def test_a_select_reads_only_the_items_it_names_however_many_other_keys_the_store_holds() -> None:
    backing = CountingDict()
    store = IndexedStore(backing)
    for n in range(300):  # 300 agreements of another client, 300 of ours
        _send(store, snapshot(5_000 + n, [50_000 + n], client="999"), n)
        _send(store, snapshot(1_000 + n, [10_000 + n * 2, 10_001 + n * 2]), n)
    backing.keys_listed = backing.reads = 0

    outputs = _send(store, select([], [10_001, 10_599, 10_300]))

    assert sorted(_mapped_keys(outputs)) == sorted(
        f"cw:{TENANT}:addition:{a}" for a in (10_001, 10_599, 10_300)
    )
    assert backing.keys_listed == 0  # no scan of the store's keys
    assert backing.reads <= 10  # the auto-sync flag and the 3 owning agreements (read, then updated)


def test_turning_auto_sync_on_visits_only_that_clients_agreements() -> None:
    backing = CountingDict()
    store = IndexedStore(backing)
    for n in range(200):
        _send(store, snapshot(5_000 + n, [50_000 + n], client="999"), n)
    _send(store, snapshot(1, [11, 12]))
    backing.keys_listed = 0

    outputs = _send(store, set_auto_sync(True))

    assert sorted(_mapped_keys(outputs)) == [
        f"cw:{TENANT}:addition:11",
        f"cw:{TENANT}:addition:12",
        f"cw:{TENANT}:agreement:1",
    ]
    assert backing.keys_listed == 0


def test_an_addition_that_moved_to_another_agreement_is_selected_under_its_new_agreement() -> None:
    store = IndexedStore()
    _send(store, snapshot(1, [11, 12], version="2025-03-14T16:02:11Z"))
    _send(store, snapshot(2, [21], version="2025-03-14T16:02:11Z"))
    _send(store, snapshot(1, [11], version="2025-03-15T09:00:00Z"), 2)  # 12 left agreement 1 ...
    _send(store, snapshot(2, [21, 12], version="2025-03-15T09:00:00Z"), 3)  # ... for agreement 2

    outputs = _send(store, select([], [12]))

    records = [o.event for o in outputs if isinstance(o, Emit) and isinstance(o.event, ContractRecordMapped)]
    assert [(r.data.contract_key, r.data.source.agreement_id) for r in records] == [
        (f"cw:{TENANT}:addition:12", 2)
    ]
    assert store.index.owner(f"{TENANT}:250", 11) == 1


def test_the_index_kept_by_writes_equals_one_rebuilt_from_the_store() -> None:
    store = IndexedStore()
    _send(store, snapshot(1, [11, 12]))
    _send(store, snapshot(2, [21]), 1)
    _send(store, snapshot(1, [13], version="2025-04-01T00:00:00Z"), 2)
    _send(store, snapshot(3, [31], client="777"), 3)
    rebuilt = ClientIndex()
    rebuilt.rebuild(store.data)

    for client in (f"{TENANT}:250", f"{TENANT}:777"):
        assert store.index.agreements(client) == rebuilt.agreements(client)
        for addition_id in (11, 12, 13, 21, 31):
            assert store.index.owner(client, addition_id) == rebuilt.owner(client, addition_id)
    assert store.index.owner(f"{TENANT}:250", 12) is None
    assert store.index.agreements(f"{TENANT}:250") == [1, 2]


@pytest.fixture
def mapper(tmp_path: Path) -> MapperApp:
    app = MapperApp(
        MapperSettings(app_id="unit-mapper-index", datadir=str(tmp_path), partitions=2),
        KafkaSettings(bootstrap_servers="127.0.0.1:1"),
    )
    app._recovered = lambda: True  # type: ignore[method-assign]

    async def sent(messages: list[OutMessage]) -> dict[tuple[str, int], int]:
        return {}

    app.output.produce_all = sent  # type: ignore[method-assign]
    return app


async def test_the_workers_index_follows_an_undone_batch_and_a_recovery(mapper: MapperApp) -> None:
    first = snapshot(1, [11])
    await mapper._handle_messages([RawMessage(PSA_AGREEMENTS, 0, 0, first.key, first.to_bytes())])
    client = f"{TENANT}:250"
    assert mapper.store.index.owner(client, 11) == 1

    async def rebalance(messages: list[OutMessage]) -> None:
        raise asyncio.CancelledError()

    mapper.output.produce_all = rebalance  # type: ignore[method-assign]
    moved = snapshot(2, [11])
    with pytest.raises(asyncio.CancelledError):
        await mapper._handle_messages([RawMessage(PSA_AGREEMENTS, 0, 1, moved.key, moved.to_bytes())])
    assert mapper.store.index.owner(client, 11) == 1  # the undone write left no trace
    assert mapper.store.index.agreements(client) == [1]

    recovered = mapper.store[f"{client}|i|1"].replace(b'"add":[11]', b'"add":[33]')
    mapper.backend.write({f"{client}|i|3": recovered}, {0: 1})  # recovery filled the store
    mapper._on_recovered()
    assert mapper.store.index.owner(client, 33) == 3


async def test_a_long_batch_gives_the_event_loop_a_turn_between_messages(
    mapper: MapperApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_decide(*args: object, **kwargs: object) -> object:
        time.sleep(0.01)  # 10 ms of blocking work per message
        return real_decide(*args, **kwargs)  # type: ignore[arg-type]

    real_decide = app_module.decide  # type: ignore[attr-defined]
    monkeypatch.setattr(app_module, "decide", slow_decide)
    ticks: list[float] = []

    async def probe() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0)

    messages = [RawMessage(PSA_AGREEMENTS, 0, n, b"t:c", b"not json") for n in range(20)]
    task = asyncio.create_task(probe())
    await asyncio.sleep(0)
    started = time.perf_counter()
    await mapper._handle_messages(messages)
    ended = time.perf_counter()
    task.cancel()

    during = [t for t in ticks if started < t < ended]
    assert len(during) >= 5  # the probe ran while the 200 ms batch was being decided


async def test_a_slow_command_is_decided_while_the_event_loop_keeps_answering(
    mapper: MapperApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_decide(*args: object, **kwargs: object) -> object:
        time.sleep(0.3)  # one command that costs 300 ms (a select of thousands of ids)
        return real_decide(*args, **kwargs)  # type: ignore[arg-type]

    real_decide = app_module.decide  # type: ignore[attr-defined]
    monkeypatch.setattr(app_module, "decide", slow_decide)
    ticks: list[float] = []

    async def probe() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    command = select([], [11])
    task = asyncio.create_task(probe())
    await asyncio.sleep(0)
    started = time.perf_counter()
    await mapper._handle_messages([RawMessage(SYNC_COMMANDS, 0, 0, command.key, command.to_bytes())])
    ended = time.perf_counter()
    task.cancel()

    during = [t for t in ticks if started < t < ended]
    assert ended - started >= 0.3
    assert len(during) >= 10  # the loop ran every ~10 ms while the command was decided
    assert mapper.store.position(SYNC_COMMANDS, 0) == 1
