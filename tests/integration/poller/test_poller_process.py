"""The poller as a process (`python -m services.poller --config ...`): commands from Kafka, SIGTERM,
and SIGKILL in the middle of an import followed by a restart."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from poller_support import KafkaTap, start_poller_process, unique_tenant, write_tenants_toml
from sqlalchemy import create_engine, text

from devtools.cwsim.testing import SimHandle, run_simulator
from schemas.commands import RefreshCommand, RefreshData
from schemas.topics import SYNC_COMMANDS
from services.common.kafka import new_producer, publish
from services.common.settings import KafkaSettings


def completed(events: list, count: int = 1) -> bool:  # type: ignore[type-arg]
    return sum(e.type == "sync.poll.completed" for e in events) >= count


def recorded_ids(database_url: str, tenant_id: str) -> set[int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT agreement_id FROM poller_snapshots WHERE tenant_id = :t"), {"t": tenant_id}
            ).all()
    finally:
        engine.dispose()
    return {int(r[0]) for r in rows}


@pytest.fixture
def big_sim() -> Iterator[SimHandle]:
    with run_simulator(companies=10, agreements_per_company=30, additions_per_agreement=2) as handle:
        yield handle


async def test_refresh_command_from_kafka_rereads_the_client_and_sigterm_stops_cleanly(
    sim: SimHandle, tap: KafkaTap, kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    tenant_id = unique_tenant("proc")
    config = tmp_path / "tenants.toml"
    secrets = write_tenants_toml(config, sim, tenant_id, poll_interval="1h", reconcile_interval="1d")
    process = start_poller_process(
        config, secrets, kafka_bootstrap, database_url, POLLER_HEARTBEAT_INTERVAL_S="1"
    )
    try:
        await tap.wait_for(tenant_id, completed, deadline_s=60)
        with sim.client() as http:
            agreement = http.get("/finance/agreements", params={"pageSize": 1}).json()[0]
            addition = http.get(f"/finance/agreements/{agreement['id']}/additions").json()[0]
        sim.control.update_addition(agreement["id"], addition["id"], quantity=123)
        client_id = str(agreement["company"]["id"])
        command = RefreshCommand.build(
            RefreshData(tenant_id=tenant_id, client_id=client_id, requested_by="integration-test"),
            source="tests",
        )
        producer = new_producer(KafkaSettings(bootstrap_servers=kafka_bootstrap))
        await producer.start()
        try:
            await publish(producer, SYNC_COMMANDS, command)
        finally:
            await producer.stop()
        events = await tap.wait_for(
            tenant_id,
            lambda ev: any(
                e.type == "psa.agreement.observed" and e.correlationid == str(command.id) for e in ev
            ),
            deadline_s=60,
        )
        refreshed = [
            e for e in events if e.correlationid == str(command.id) and e.type == "psa.agreement.observed"
        ]
        assert [e.data.agreement.id for e in refreshed] == [agreement["id"]]  # type: ignore[attr-defined]
        assert any(e.type == "sync.heartbeat" for e in events)
        await tap.wait_for(
            tenant_id,
            lambda ev: any(
                e.type == "sync.poll.completed" and e.correlationid == str(command.id) for e in ev
            ),
        )
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
    assert code == 0


async def test_sigkill_mid_import_then_restart_loses_nothing_and_reemits_only_the_unrecorded_tail(
    big_sim: SimHandle, tap: KafkaTap, kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    tenant_id = unique_tenant("kill")
    config = tmp_path / "tenants.toml"
    secrets = write_tenants_toml(config, big_sim, tenant_id, poll_interval="1h", concurrency=2)
    with big_sim.client() as http:
        all_ids = {
            a["id"] for a in http.get("/finance/agreements", params={"pageSize": 1000, "fields": "id"}).json()
        }
    assert len(all_ids) == 300
    big_sim.control.set_faults(latency_ms=30)
    first = start_poller_process(config, secrets, kafka_bootstrap, database_url)
    try:
        await tap.wait_for(
            tenant_id, lambda ev: sum(e.type == "psa.agreement.observed" for e in ev) >= 60, deadline_s=60
        )
    finally:
        first.kill()
        await asyncio.to_thread(first.wait, 30)
    await tap.settle(2.0)
    first_ids = tap.observed_ids(tenant_id)
    recorded = recorded_ids(database_url, tenant_id)
    assert not completed(tap.of(tenant_id)), "the import should have been interrupted"
    assert 60 <= len(first_ids) < 300
    assert recorded <= set(first_ids)

    big_sim.control.clear_faults()
    second = start_poller_process(config, secrets, kafka_bootstrap, database_url)
    try:
        await tap.wait_for(tenant_id, completed, deadline_s=60)
        await tap.settle(1.0)
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait, 30)
    second_ids = tap.observed_ids(tenant_id)[len(first_ids) :]
    assert set(first_ids) | set(second_ids) == all_ids  # nothing lost
    assert not set(second_ids) & recorded  # nothing recorded as emitted is emitted again
    assert len(second_ids) == len(set(second_ids)) == 300 - len(recorded)
    tail = set(first_ids) - recorded  # sent before the kill but not yet recorded
    assert set(second_ids) & set(first_ids) == tail
    assert len(tail) <= 200  # at most one ack batch
    assert recorded_ids(database_url, tenant_id) == all_ids


async def test_sigterm_mid_run_abandons_the_run_without_advancing_its_watermark(
    big_sim: SimHandle, tap: KafkaTap, kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    tenant_id = unique_tenant("proc")
    config = tmp_path / "tenants.toml"
    secrets = write_tenants_toml(config, big_sim, tenant_id, poll_interval="1h", concurrency=1)
    big_sim.control.set_faults(latency_ms=50)
    process = start_poller_process(
        config, secrets, kafka_bootstrap, database_url, POLLER_SHUTDOWN_GRACE_S="0.5"
    )
    try:
        await tap.wait_for(
            tenant_id, lambda ev: sum(e.type == "psa.agreement.observed" for e in ev) >= 10, deadline_s=60
        )
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
    assert code == 0
    await tap.settle(1.0)
    assert not completed(tap.of(tenant_id))
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            watermark = connection.execute(
                text(
                    "SELECT watermark FROM poller_cursors WHERE tenant_id = :t AND scope = 'incremental:all'"
                ),
                {"t": tenant_id},
            ).scalar()
    finally:
        engine.dispose()
    assert watermark is None
    recorded = recorded_ids(database_url, tenant_id)
    assert 0 < len(recorded) <= len(set(tap.observed_ids(tenant_id)))  # acknowledged ones stay recorded
