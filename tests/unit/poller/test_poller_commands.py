from __future__ import annotations

from datetime import timedelta
from typing import Any

from poller_fakes import InMemoryStore, RecordingPublisher, make_simulator, sim_client

from schemas.commands import (
    RefreshCommand,
    RefreshData,
    SelectCommand,
    SelectData,
    SetAutoSyncCommand,
    SetAutoSyncData,
)
from schemas.envelope import utcnow
from services.poller.app import handle_command
from services.poller.service import TenantPoller
from services.poller.tenants import parse_config

MAX_AGE = timedelta(minutes=10)


def make_poller() -> TenantPoller:
    sim = make_simulator()
    tenant = parse_config(
        {
            "tenants": [
                {
                    "id": "acme",
                    "site": sim.config.public_url,
                    "company_id": sim.config.company_id,
                    "clients": [250, 251],
                    "credentials": {
                        "public_key": {"env": "A"},
                        "private_key": {"env": "B"},
                        "client_id": {"env": "C"},
                    },
                }
            ]
        }
    ).tenants[0]
    return TenantPoller(tenant, sim_client(sim), RecordingPublisher(), InMemoryStore())


async def test_refresh_is_queued_with_the_command_id_as_correlation() -> None:
    poller = make_poller()
    command = RefreshCommand.build(
        RefreshData(tenant_id="acme", client_id="250", requested_by="ui"), source="ui"
    )
    assert (
        await handle_command(command.to_bytes(), {"acme": poller}, MAX_AGE, key=command.key)
        == "refresh queued"
    )
    assert poller.hints.refreshes == {"250": str(command.id)}


async def test_stale_refreshes_and_other_tenants_are_skipped() -> None:
    poller = make_poller()
    stale = RefreshCommand.build(
        RefreshData(tenant_id="acme", client_id="250", requested_by="ui"), source="ui"
    )
    received = utcnow() - timedelta(hours=1)  # the Kafka record's timestamp: received an hour ago
    other = RefreshCommand.build(
        RefreshData(tenant_id="beta", client_id="250", requested_by="ui"), source="ui"
    )
    assert (
        await handle_command(stale.to_bytes(), {"acme": poller}, MAX_AGE, key=stale.key, received_at=received)
        == "skipped: stale refresh"
    )
    assert (
        await handle_command(other.to_bytes(), {"acme": poller}, MAX_AGE, key=other.key)
        == "skipped: not this shard's tenant"
    )
    assert poller.hints_waiting == 0


async def test_a_refresh_for_a_tenant_absent_from_the_whole_tenants_file_is_skipped_as_unknown() -> None:
    poller = make_poller()
    ghost = RefreshCommand.build(
        RefreshData(tenant_id="ghost", client_id="250", requested_by="ui"), source="ui"
    )
    beta = RefreshCommand.build(
        RefreshData(tenant_id="beta", client_id="250", requested_by="ui"), source="ui"
    )
    configured = frozenset({"acme", "beta"})  # beta is configured, polled by another shard
    assert (
        await handle_command(ghost.to_bytes(), {"acme": poller}, MAX_AGE, configured, key=ghost.key)
    ).startswith("skipped: unknown tenant")
    assert (
        await handle_command(beta.to_bytes(), {"acme": poller}, MAX_AGE, configured, key=beta.key)
        == "skipped: not this shard's tenant"
    )
    assert poller.hints_waiting == 0


async def test_set_auto_sync_moves_a_configured_client_onto_the_fast_cadence() -> None:
    poller = make_poller()
    on = SetAutoSyncCommand.build(
        SetAutoSyncData(tenant_id="acme", client_id="251", enabled=True, requested_by="ui"), source="ui"
    )
    unknown = SetAutoSyncCommand.build(
        SetAutoSyncData(tenant_id="acme", client_id="999", enabled=True, requested_by="ui"), source="ui"
    )
    assert await handle_command(on.to_bytes(), {"acme": poller}, MAX_AGE, key=on.key) == "auto-sync on"
    assert (
        await handle_command(unknown.to_bytes(), {"acme": poller}, MAX_AGE, key=unknown.key)
        == "skipped: unknown client"
    )
    assert poller.auto_clients == {"251"}
    saved = await poller.store.get_cursor("acme", "auto_sync")
    assert saved.last_run == {"clients": ["251"]}


async def test_bad_bytes_and_commands_for_other_services_are_skipped_not_raised() -> None:
    poller = make_poller()
    select = SelectCommand.build(
        SelectData(tenant_id="acme", client_id="250", agreement_ids=[1], requested_by="ui"), source="ui"
    )
    assert (
        await handle_command(b"{not json", {"acme": poller}, MAX_AGE, key=b"acme:250") == "skipped: invalid"
    )
    assert await handle_command(None, {"acme": poller}, MAX_AGE, key=None) == "skipped: empty"
    assert await handle_command(select.to_bytes(), {"acme": poller}, MAX_AGE, key=select.key) == (
        "skipped: sync.command.select is not the poller's"
    )


async def test_a_command_keyed_as_another_client_or_without_a_key_is_not_acted_on() -> None:
    poller = make_poller()
    requested: list[str] = []
    poller.request_refresh = lambda client_id, correlationid: requested.append(client_id)  # type: ignore[method-assign]
    command = RefreshCommand.build(
        RefreshData(tenant_id="acme", client_id="250", requested_by="ui"), source="ui"
    )
    for key in (None, b"acme:251", b"other:250"):
        outcome = await handle_command(command.to_bytes(), {"acme": poller}, MAX_AGE, key=key)
        assert outcome.startswith("skipped: key_mismatch")
    assert requested == []


async def test_any_failure_acting_on_one_command_dead_letters_it_and_the_next_is_handled() -> None:
    from aiokafka import ConsumerRecord

    from schemas.topics import DLQ_ERROR_CLASS, DLQ_REASON, DLQ_STAGE
    from services.poller.app import handle_guarded

    class Producer:
        def __init__(self) -> None:
            self.sent: list[tuple[str, bytes | None, dict[str, bytes]]] = []

        async def send_and_wait(
            self, topic: str, value: bytes | None, key: bytes | None = None, headers: Any = ()
        ) -> None:
            self.sent.append((topic, value, dict(headers)))

    poller = make_poller()

    async def broken(client_id: str, enabled: bool) -> bool:
        raise RecursionError("maximum recursion depth exceeded")

    poller.set_auto_sync = broken  # type: ignore[method-assign]
    producer = Producer()
    bad = SetAutoSyncCommand.build(
        SetAutoSyncData(tenant_id="acme", client_id="250", enabled=True, requested_by="ui"), source="ui"
    )
    good = RefreshCommand.build(
        RefreshData(tenant_id="acme", client_id="250", requested_by="ui"), source="ui"
    )

    def record(offset: int, command: Any) -> Any:
        now_ms = int(utcnow().timestamp() * 1000)  # the Kafka record's timestamp: received now
        return ConsumerRecord(
            "sync.commands.v1", 0, offset, now_ms, 0, command.key, command.to_bytes(), None, 0, 0, []
        )

    outcome = await handle_guarded(record(4, bad), producer, {"acme": poller}, MAX_AGE)  # type: ignore[arg-type]
    assert outcome == "dead-lettered: too_deeply_nested"
    ((topic, value, headers),) = producer.sent
    assert topic == "sync.deadletter.v1" and value == bad.to_bytes()
    assert headers[DLQ_REASON] == b"too_deeply_nested"
    assert headers[DLQ_ERROR_CLASS] == b"RecursionError"
    assert headers[DLQ_STAGE] == b"poller.commands"
    assert await handle_guarded(record(5, good), producer, {"acme": poller}, MAX_AGE) == "refresh queued"  # type: ignore[arg-type]
