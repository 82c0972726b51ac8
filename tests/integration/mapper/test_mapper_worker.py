"""The mapper as a real faust worker process on the real broker: select, auto-sync, rejections,
dead letters, and state recovery across a restart.

One worker serves the first tests (each test uses its own tenant on the shared fresh topics);
the restart test runs its own worker twice under one app id.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "mapper"))

from mapper_factories import select, set_auto_sync, snapshot
from mapper_worker import MapperWorker, Received, create_topics, delete_topics

from schemas.topics import (
    CONTRACT_RECORDS,
    DEADLETTER,
    DLQ_REASON,
    DLQ_SOURCE_TOPIC,
    PSA_AGREEMENTS,
    SYNC_COMMANDS,
    SYNC_EVENTS,
)

OUTPUTS = [CONTRACT_RECORDS, SYNC_EVENTS, DEADLETTER]


def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def of_tenant(name: str) -> Callable[[Received], bool]:
    return lambda r: r.key is not None and r.key.startswith(f"{name}:".encode())


def records(received: list[Received]) -> list[dict[str, object]]:
    return [r.json() for r in received if r.topic == CONTRACT_RECORDS]


def events(received: list[Received], kind: str) -> list[dict[str, object]]:
    return [doc for r in received if r.topic == SYNC_EVENTS and (doc := r.json())["type"] == kind]


def keys(received: list[Received]) -> set[str]:
    return {doc["data"]["contract_key"] for doc in records(received)}  # type: ignore[index]


@pytest.fixture(scope="module")
async def worker(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MapperWorker]:
    run = uuid.uuid4().hex[:8]
    prefix = f"it-mapper-{run}."
    await create_topics(kafka_bootstrap, prefix)
    mapper = MapperWorker(kafka_bootstrap, prefix, f"it-mapper-{run}", tmp_path_factory.mktemp("mapper"))
    mapper.start()
    try:
        await mapper.wait_ready()
        yield mapper
    finally:
        code = await asyncio.to_thread(mapper.stop)
        await delete_topics(kafka_bootstrap, f"it-mapper-{run}")
        assert code == 0, f"worker exit code {code}:\n{mapper.log_tail()}"


async def test_select_maps_the_selected_items_with_the_command_id(worker: MapperWorker) -> None:
    name = tenant()
    command = select([1], [12], tenant=name)
    await worker.wait_processed(*await worker.send(snapshot(1, [11, 12], tenant=name)))
    await worker.send(command)
    got = await worker.collect(OUTPUTS, lambda r: len(records(r)) >= 2, accept=of_tenant(name))
    assert keys(got) == {f"cw:{name}:agreement:1", f"cw:{name}:addition:12"}
    assert {doc["correlationid"] for doc in records(got)} == {str(command.id)}
    addition = next(d for d in records(got) if d["data"]["source"]["kind"] == "addition")  # type: ignore[index]
    assert addition["data"]["parent_contract_key"] == f"cw:{name}:agreement:1"  # type: ignore[index]
    assert addition["data"]["billing_cost"] == {"amount": "550.00", "currency": "USD"}  # type: ignore[index]


async def test_auto_sync_applies_pending_items_when_turned_on_and_new_items_as_observed(
    worker: MapperWorker,
) -> None:
    name = tenant()
    turn_on = set_auto_sync(True, tenant=name)
    await worker.wait_processed(*await worker.send(snapshot(1, [11], tenant=name)))  # observed while off
    await worker.send(turn_on)
    got = await worker.collect(
        OUTPUTS,
        lambda r: len(records(r)) >= 2 and events(r, "sync.auto_sync.changed"),
        accept=of_tenant(name),
    )
    assert keys(got) == {f"cw:{name}:agreement:1", f"cw:{name}:addition:11"}
    assert {doc["correlationid"] for doc in records(got)} == {str(turn_on.id)}
    assert events(got, "sync.auto_sync.changed")[0]["data"]["enabled"] is True  # type: ignore[index]

    await worker.send(
        snapshot(2, [21], tenant=name), snapshot(1, [11], tenant=name, version="2025-05-01T00:00:00Z")
    )
    got = await worker.collect(OUTPUTS, lambda r: len(records(r)) >= 6, accept=of_tenant(name))
    later = records(got)[2:]
    assert {d["data"]["contract_key"] for d in later} == {  # type: ignore[index]
        f"cw:{name}:agreement:2", f"cw:{name}:addition:21", f"cw:{name}:agreement:1", f"cw:{name}:addition:11",
    }  # fmt: skip
    assert all("correlationid" not in d for d in later)


async def test_rejects_select_while_auto_sync_is_on_and_unknown_ids(worker: MapperWorker) -> None:
    name = tenant()
    while_on = select([1], tenant=name)
    unknown = select([404], [405], tenant=name)
    await worker.send(set_auto_sync(True, tenant=name), while_on)  # one topic, one key: in order
    await worker.send(set_auto_sync(False, tenant=name), unknown)
    got = await worker.collect(
        OUTPUTS, lambda r: len(events(r, "sync.command.rejected")) >= 3, accept=of_tenant(name)
    )
    rejected = {(d["data"]["command_id"], d["data"]["reason"]) for d in events(got, "sync.command.rejected")}  # type: ignore[index]
    assert rejected == {(str(while_on.id), "auto_sync_enabled"), (str(unknown.id), "not_in_catalog")}
    assert len(events(got, "sync.command.rejected")) == 3  # 404 and 405 each rejected


async def test_malformed_messages_are_dead_lettered_and_the_worker_keeps_running(
    worker: MapperWorker,
) -> None:
    name = tenant()
    bad = json.loads(select([1], tenant=name).to_bytes())
    bad["data"]["agreement_ids"] = ["not", "ids"]
    bad_value = json.dumps(bad).encode()
    key = f"{name}:250".encode()
    await worker.send_raw(
        (worker.topic(SYNC_COMMANDS), key, bad_value),
        (worker.topic(PSA_AGREEMENTS), key, b"{truncated"),
    )
    after = select([1], tenant=name)
    await worker.wait_processed(*await worker.send(snapshot(1, [], tenant=name)))
    await worker.send(after)  # still mapping afterwards
    got = await worker.collect(
        OUTPUTS,
        lambda r: len([x for x in r if x.topic == DEADLETTER]) >= 2 and len(records(r)) >= 1,
        accept=of_tenant(name),
    )
    letters = {r.value: r.headers for r in got if r.topic == DEADLETTER}
    assert letters[bad_value][DLQ_REASON] == b"validation_error"
    assert letters[bad_value][DLQ_SOURCE_TOPIC] == worker.topic(SYNC_COMMANDS).encode()
    assert letters[b"{truncated"][DLQ_REASON] == b"malformed_json"
    assert [d["data"]["reason"] for d in events(got, "sync.command.rejected")] == ["malformed"]  # type: ignore[index]
    assert records(got)[0]["correlationid"] == str(after.id)
    metrics = await asyncio.to_thread(worker.metrics)
    assert any(
        line.startswith("contract_sync_deadlettered_total{") and 'reason="validation_error"' in line
        for line in metrics.splitlines()
    ), metrics[-2000:]


async def test_restarted_worker_recovers_its_state_and_maps_an_item_observed_before(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    prefix = f"it-mapper-restart-{run}."
    await create_topics(kafka_bootstrap, prefix)
    mapper = MapperWorker(kafka_bootstrap, prefix, f"it-mapper-restart-{run}", tmp_path)
    name = tenant()
    mapper.start()
    try:
        await mapper.wait_ready()
        # processed and committed: the snapshot is in the state changelog
        await mapper.wait_processed(*await mapper.send(snapshot(7, [71, 72], tenant=name)))
    finally:
        assert await asyncio.to_thread(mapper.stop) == 0, mapper.log_tail()

    mapper.start()  # memory store: everything it knows comes back from the changelog
    try:
        await mapper.wait_ready()
        # the addition alone: its agreement is found by scanning the recovered table
        await mapper.send(select([], [72], tenant=name), select([7], tenant=name))
        got = await mapper.collect(OUTPUTS, lambda r: len(records(r)) >= 2, accept=of_tenant(name))
        assert keys(got) == {f"cw:{name}:agreement:7", f"cw:{name}:addition:72"}
        assert events(got, "sync.command.rejected") == []
    finally:
        code = await asyncio.to_thread(mapper.stop)
        await delete_topics(kafka_bootstrap, f"it-mapper-restart-{run}")
        assert code == 0, mapper.log_tail()
