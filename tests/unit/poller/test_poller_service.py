"""TenantPoller against the ConnectWise simulator in process (httpx ASGI transport, no socket),
with in-memory store and publisher fakes (tests/unit/poller/poller_fakes.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from poller_fakes import InMemoryStore, RecordingPublisher, make_simulator, sim_client
from prometheus_client import REGISTRY

from devtools.cwsim.app import Simulator
from schemas.psa import AgreementObserved
from services.poller import cursor as cursors
from services.poller.failures import pause_for
from services.poller.service import TenantPoller
from services.poller.tenants import TenantConfig, parse_config

CREDS = {"public_key": {"env": "A"}, "private_key": {"env": "B"}, "client_id": {"env": "C"}}


def tenant_config(simulator: Simulator, **overrides: object) -> TenantConfig:
    raw: dict[str, object] = {
        "id": "t-unit",
        "site": simulator.config.public_url,
        "company_id": simulator.config.company_id,
        "credentials": CREDS,
    }
    raw.update(overrides)
    return parse_config({"tenants": [raw]}).tenants[0]


@dataclass
class Rig:
    sim: Simulator
    store: InMemoryStore
    publisher: RecordingPublisher
    poller: TenantPoller

    def observed(self) -> list[AgreementObserved]:
        return [
            e for e in self.publisher.of_type("psa.agreement.observed") if isinstance(e, AgreementObserved)
        ]


async def make_rig(sim: Simulator | None = None, **config: object) -> Rig:
    sim = sim or make_simulator()
    store, publisher = InMemoryStore(), RecordingPublisher()
    poller = TenantPoller(tenant_config(sim, **config), sim_client(sim), publisher, store)
    return Rig(sim, store, publisher, poller)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = await make_rig()
    yield r
    await r.poller.client.aclose()


def agreement_ids(sim: Simulator) -> list[int]:
    return sorted(sim.store.agreements.ids)


async def test_initial_import_emits_every_agreement_with_all_its_additions(rig: Rig) -> None:
    stats = await rig.poller.poll_once()
    assert stats is not None
    events = rig.observed()
    assert sorted(e.data.agreement.id for e in events) == agreement_ids(rig.sim)
    for event in events:
        expected = sorted(rig.sim.store.additions[event.data.agreement.id].ids)
        assert [a.id for a in event.data.additions] == expected
        assert event.key == f"t-unit:{event.data.client_id}".encode()
    assert stats.changed == len(events) and stats.requests == len(events) + 1
    [completed] = rig.publisher.of_type("sync.poll.completed")
    assert completed.data.agreements_changed == len(events)  # type: ignore[attr-defined]
    assert rig.store.cursors[("t-unit", cursors.SCOPE_ALL)].watermark == stats.started_at
    assert rig.store.cursors[("t-unit", cursors.SCOPE_ALL)].last_run["requests"] == stats.requests


async def test_consecutive_polls_of_unchanged_data_emit_nothing_and_read_no_additions(rig: Rig) -> None:
    await rig.poller.poll_once()
    rig.publisher.clear()
    # make every agreement reappear in the overlapping window, unchanged
    rig.store.cursors[("t-unit", cursors.SCOPE_ALL)] = cursors_watermark_back(rig, hours=24 * 3650)
    stats = await rig.poller.poll_once()
    assert stats is not None
    assert rig.observed() == []
    assert stats.seen == len(agreement_ids(rig.sim))
    assert stats.requests == 1  # one listing page, no additions reads


def cursors_watermark_back(rig: Rig, hours: int) -> object:
    from services.poller.store import Cursor

    current = rig.store.cursors[("t-unit", cursors.SCOPE_ALL)]
    assert current.watermark is not None
    return Cursor(current.scope, current.watermark - timedelta(hours=hours))


async def test_an_edited_agreement_is_emitted_once_with_its_additions(rig: Rig) -> None:
    await rig.poller.poll_once()
    target = agreement_ids(rig.sim)[3]
    rig.sim.store.update_agreement(target, {"billAmount": 4321.5})
    rig.publisher.clear()
    stats = await rig.poller.poll_once()
    assert stats is not None
    [event] = rig.observed()
    assert event.data.agreement.id == target
    assert str(event.data.agreement.bill_amount) == "4321.5"
    assert len(event.data.additions) == len(rig.sim.store.additions[target].ids)
    assert stats.requests == 2  # listing + additions of the changed agreement
    rig.publisher.clear()
    await rig.poller.poll_once()
    assert rig.observed() == []


async def test_a_new_agreement_of_a_new_client_is_picked_up() -> None:
    r = await make_rig()
    await r.poller.poll_once()
    company = r.sim.store.add_company({"name": "Newco"})
    created = r.sim.store.create_agreement(company["id"], {"name": "Newco - Backup"})
    r.publisher.clear()
    await r.poller.poll_once()
    [event] = r.observed()
    assert event.data.agreement.id == created["id"]
    assert event.data.client_id == str(company["id"])


async def test_addition_changes_that_do_not_touch_the_agreement_are_found_by_the_sweep() -> None:
    r = await make_rig(additions_sweep_period="1s")
    await r.poller.poll_once()
    target = agreement_ids(r.sim)[0]
    first_addition = sorted(r.sim.store.additions[target].ids)[0]
    r.sim.store.update_addition(target, first_addition, {"quantity": 99})
    r.sim.store.create_addition(target, {"quantity": 3})
    r.publisher.clear()
    import asyncio

    await asyncio.sleep(1.1)  # a full sweep period elapses: every agreement is due
    stats = await r.poller.poll_once()
    assert stats is not None
    [event] = r.observed()
    assert event.data.agreement.id == target
    assert any(a.id == first_addition and str(a.quantity) == "99" for a in event.data.additions)
    assert stats.swept == len(agreement_ids(r.sim))


async def test_a_deleted_addition_is_removed_only_after_a_404() -> None:
    r = await make_rig(additions_sweep_period="1s")
    await r.poller.poll_once()
    target = agreement_ids(r.sim)[1]
    gone = sorted(r.sim.store.additions[target].ids)[0]
    r.sim.store.delete_addition(target, gone)
    r.publisher.clear()
    import asyncio

    await asyncio.sleep(1.1)
    await r.poller.poll_once()
    removed = r.publisher.of_type("psa.addition.removed")
    assert [(e.data.agreement_id, e.data.addition_id) for e in removed] == [(target, gone)]  # type: ignore[attr-defined]
    assert removed[0].data.evidence.method == "direct_get_404"  # type: ignore[attr-defined]
    [event] = r.observed()
    assert gone not in [a.id for a in event.data.additions]


async def test_reconcile_removes_a_deleted_agreement_confirmed_by_404(rig: Rig) -> None:
    await rig.poller.poll_once()
    target = agreement_ids(rig.sim)[2]
    rig.sim.store.delete_agreement(target)
    rig.publisher.clear()
    stats = await rig.poller.reconcile()
    [removed] = rig.publisher.of_type("psa.agreement.removed")
    assert removed.data.agreement_id == target  # type: ignore[attr-defined]
    assert removed.data.evidence.method == "direct_get_404"  # type: ignore[attr-defined]
    assert stats.agreements_removed == 1
    assert ("t-unit", target) not in rig.store.snapshots
    rig.publisher.clear()
    await rig.poller.reconcile()
    assert rig.publisher.of_type("psa.agreement.removed") == []


async def test_reconcile_refuses_a_listing_that_would_remove_too_much(rig: Rig) -> None:
    await rig.poller.poll_once()
    for agreement_id in agreement_ids(rig.sim)[:6]:
        rig.sim.store.delete_agreement(agreement_id)
    rig.publisher.clear()
    await rig.poller.reconcile()
    assert rig.publisher.of_type("psa.agreement.removed") == []
    [failed] = rig.publisher.of_type("sync.failed")
    assert failed.data.error_code == "removal_guard"  # type: ignore[attr-defined]
    assert len(rig.store.snapshots) == 12


async def test_a_403_during_reconcile_removes_nothing_and_pauses_the_tenant(rig: Rig) -> None:
    await rig.poller.poll_once()
    rig.sim.store.delete_agreement(agreement_ids(rig.sim)[0])
    rig.sim.faults.update({"force_403_s": -1})
    rig.publisher.clear()
    ok = await rig.poller.guarded("poller.reconcile", rig.poller.reconcile)
    assert not ok
    assert rig.publisher.of_type("psa.agreement.removed") == []
    [failed] = rig.publisher.of_type("sync.failed")
    assert "Finance > Agreements" in failed.data.operator_action  # type: ignore[attr-defined]
    assert failed.data.retryable is False  # type: ignore[attr-defined]
    assert rig.poller.status == "paused" and rig.poller.paused_until is not None
    assert REGISTRY.get_sample_value("contract_sync_tenant_paused", {"tenant": "t-unit"}) == 1


async def test_a_500_during_reconcile_removes_nothing(rig: Rig) -> None:
    await rig.poller.poll_once()
    rig.sim.store.delete_agreement(agreement_ids(rig.sim)[0])
    rig.sim.faults.update({"error_rate": 1.0})
    rig.publisher.clear()
    assert not await rig.poller.guarded("poller.reconcile", rig.poller.reconcile)
    assert rig.publisher.of_type("psa.agreement.removed") == []
    [failed] = rig.publisher.of_type("sync.failed")
    assert failed.data.retryable is True  # type: ignore[attr-defined]
    assert rig.poller.status == "degraded"


async def test_a_failed_run_does_not_advance_the_watermark(rig: Rig) -> None:
    await rig.poller.poll_once()
    before = rig.store.cursors[("t-unit", cursors.SCOPE_ALL)].watermark
    rig.sim.faults.update({"error_rate": 1.0})
    assert not await rig.poller.guarded("poller.poll", rig.poller.poll_once)
    assert rig.store.cursors[("t-unit", cursors.SCOPE_ALL)].watermark == before


async def test_unacknowledged_events_are_not_recorded_and_are_emitted_again() -> None:
    r = await make_rig()
    r.publisher.fail_after = 5
    r.poller.batch_size = 5
    assert not await r.poller.guarded("poller.poll", r.poller.poll_once)
    assert len(r.store.snapshots) == 5  # only the acknowledged batch
    assert ("t-unit", cursors.SCOPE_ALL) not in r.store.cursors
    r.publisher.fail_after = None
    r.publisher.clear()
    await r.poller.poll_once()
    assert len(r.observed()) == 12 - 5


async def test_refresh_rereads_one_client_and_emits_only_what_changed(rig: Rig) -> None:
    await rig.poller.poll_once()
    target = agreement_ids(rig.sim)[0]
    client = str(rig.sim.store.agreements.by_id[target].data["company"]["id"])
    addition = sorted(rig.sim.store.additions[target].ids)[0]
    rig.sim.store.update_addition(target, addition, {"quantity": 7})
    rig.publisher.clear()
    stats = await rig.poller.refresh_client(client, correlationid="cmd-42")
    assert stats is not None
    [event] = rig.observed()
    assert event.data.agreement.id == target and event.correlationid == "cmd-42"
    [completed] = rig.publisher.of_type("sync.poll.completed")
    assert completed.correlationid == "cmd-42"
    assert completed.data.run_kind == "refresh"  # type: ignore[attr-defined]
    unknown = await rig.poller.refresh_client("999999")
    assert unknown is not None and unknown.seen == 0


async def test_commands_for_clients_outside_the_configured_list_are_skipped() -> None:
    r = await make_rig(clients=[250])
    assert await r.poller.refresh_client("251") is None
    assert not await r.poller.set_auto_sync("251", True)
    assert await r.poller.set_auto_sync("250", True)
    assert r.poller.auto_clients == {"250"}


async def test_auto_sync_scope_reads_only_auto_sync_clients(rig: Rig) -> None:
    assert await rig.poller.poll_once(cursors.SCOPE_AUTO) is None  # no auto-sync clients yet
    await rig.poller.poll_once()
    ids = agreement_ids(rig.sim)
    companies = sorted({rig.sim.store.agreements.by_id[i].data["company"]["id"] for i in ids})
    assert await rig.poller.set_auto_sync(str(companies[0]), True)
    for agreement_id in ids:
        rig.sim.store.update_agreement(agreement_id, {"customerPO": "PO-1"})
    rig.publisher.clear()
    await rig.poller.poll_once(cursors.SCOPE_AUTO)
    assert {e.data.client_id for e in rig.observed()} == {str(companies[0])}
    assert rig.store.cursors[("t-unit", cursors.SCOPE_AUTO_SYNC)].last_run == {"clients": [str(companies[0])]}


async def test_callback_hint_rereads_the_agreement_and_a_deleted_one_needs_a_404(rig: Rig) -> None:
    await rig.poller.poll_once()
    target = agreement_ids(rig.sim)[5]
    rig.sim.store.update_agreement(target, {"name": "Renamed by callback"})
    rig.publisher.clear()
    await rig.poller.recheck_agreement(target)
    [event] = rig.observed()
    assert event.data.agreement.name == "Renamed by callback"
    rig.publisher.clear()
    await rig.poller.recheck_agreement(target, deleted=True)  # still exists: no removal
    assert rig.publisher.of_type("psa.agreement.removed") == []
    rig.sim.store.delete_agreement(target)
    await rig.poller.recheck_agreement(target, deleted=True)
    [removed] = rig.publisher.of_type("psa.agreement.removed")
    assert removed.data.evidence.method == "deleted_callback"  # type: ignore[attr-defined]


async def test_callback_recheck_reads_only_that_agreements_snapshot_record(rig: Rig) -> None:
    await rig.poller.poll_once()
    target = agreement_ids(rig.sim)[3]
    rig.sim.store.update_agreement(target, {"name": "Changed for a callback"})
    rig.store.known_queries.clear()
    rig.publisher.clear()
    await rig.poller.recheck_agreement(target)
    assert rig.store.known_queries == [{target}]
    [event] = rig.observed()
    assert event.data.agreement.name == "Changed for a callback"


def test_pause_backoff_doubles_up_to_an_hour() -> None:
    assert pause_for(1) == timedelta(minutes=1)
    assert pause_for(3) == timedelta(minutes=4)
    assert pause_for(50) == timedelta(hours=1)


async def test_a_401_pauses_the_tenant_with_growing_backoff_and_names_the_credentials_fix(rig: Rig) -> None:
    rig.sim.faults.update({"force_401_s": -1})
    assert not await rig.poller.guarded("poller.poll", rig.poller.poll_once)
    first = rig.poller.paused_until
    assert not await rig.poller.guarded("poller.poll", rig.poller.poll_once)
    second = rig.poller.paused_until
    assert first is not None and second is not None and second > first
    failed = rig.publisher.of_type("sync.failed")
    assert len(failed) == 2
    assert "private key" in failed[0].data.operator_action  # type: ignore[attr-defined]
    assert "cwsimPrivateKey01" not in failed[0].to_bytes().decode()
    rig.sim.faults.update({"force_401_s": 0})
    assert await rig.poller.guarded("poller.poll", rig.poller.poll_once)
    assert rig.poller.status == "ok" and rig.poller.paused_until is None


async def test_an_agreement_the_wire_contract_cannot_carry_is_skipped_and_reported(rig: Rig) -> None:
    ids = agreement_ids(rig.sim)
    rig.sim.store.update_agreement(ids[0], {"agreementStatus": "Exploded"})
    stats = await rig.poller.poll_once()
    assert stats is not None and stats.invalid == 1
    assert ids[0] not in [e.data.agreement.id for e in rig.observed()]
    assert len(rig.observed()) == len(ids) - 1
    [failed] = rig.publisher.of_type("sync.failed")
    assert failed.data.error_code == "invalid_psa_data"  # type: ignore[attr-defined]
    assert str(ids[0]) in failed.data.message  # type: ignore[attr-defined]
