"""The poller against the ConnectWise simulator (HTTP), a real Kafka broker and a real PostgreSQL.

Each test uses its own tenant id, so the shared topics and tables never mix tests up.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from poller_support import KafkaTap, unique_tenant
from pydantic import SecretStr

from devtools.cwsim.testing import SimHandle
from schemas.envelope import CloudEvent
from services.poller import cursor as cursors
from services.poller.connectwise import ConnectWiseClient, ConnectWiseConnection
from services.poller.publisher import KafkaPublisher
from services.poller.service import TenantPoller
from services.poller.store import PostgresPollerStore
from services.poller.tenants import parse_config

CREDS = {"public_key": {"env": "A"}, "private_key": {"env": "B"}, "client_id": {"env": "C"}}


@dataclass
class Setup:
    tenant_id: str
    sim: SimHandle
    poller: TenantPoller
    tap: KafkaTap
    store: PostgresPollerStore

    def all_agreements(self) -> list[dict[str, Any]]:
        with self.sim.client() as http:
            rows: list[dict[str, Any]] = http.get("/finance/agreements", params={"pageSize": 1000}).json()
        return rows

    def additions(self, agreement_id: int) -> list[dict[str, Any]]:
        with self.sim.client() as http:
            rows: list[dict[str, Any]] = http.get(f"/finance/agreements/{agreement_id}/additions").json()
        return rows

    def observed(self) -> list[CloudEvent]:
        return self.tap.of(self.tenant_id, "psa.agreement.observed")


def connection(sim: SimHandle) -> ConnectWiseConnection:
    return ConnectWiseConnection(
        site=sim.site_url,
        company_id=sim.company_id,
        public_key=SecretStr(sim.public_key),
        private_key=SecretStr(sim.private_key),
        client_id=SecretStr(sim.client_id),
        requests_per_minute=100_000,
        max_attempts=2,
        backoff_initial=0.01,
    )


@pytest.fixture
def make_setup(
    sim: SimHandle, kafka_publisher: KafkaPublisher, poller_store: PostgresPollerStore, tap: KafkaTap
) -> Callable[..., Setup]:
    clients: list[ConnectWiseClient] = []

    def make(**options: object) -> Setup:
        tenant_id = unique_tenant()
        raw: dict[str, object] = {
            "id": tenant_id,
            "site": sim.site_url,
            "company_id": sim.company_id,
            "credentials": CREDS,
        }
        raw.update(options)
        tenant = parse_config({"tenants": [raw]}).tenants[0]
        client = ConnectWiseClient(connection(sim), tenant_id=tenant_id)
        clients.append(client)
        poller = TenantPoller(tenant, client, kafka_publisher, poller_store)
        return Setup(tenant_id, sim, poller, tap, poller_store)

    return make


@pytest.fixture
async def setup(make_setup: Callable[..., Setup]) -> AsyncIterator[Setup]:
    s = make_setup()
    yield s
    await s.poller.client.aclose()


def has_completed(count: int, observed: int = 0) -> Callable[[list[CloudEvent]], bool]:
    def check(events: list[CloudEvent]) -> bool:
        return (
            sum(e.type == "sync.poll.completed" for e in events) >= count
            and sum(e.type == "psa.agreement.observed" for e in events) >= observed
        )

    return check


async def test_initial_import_publishes_every_agreement_and_records_its_snapshot(setup: Setup) -> None:
    await setup.poller.poll_once()
    agreements = setup.all_agreements()
    await setup.tap.wait_for(setup.tenant_id, has_completed(1, len(agreements)))
    assert sorted(setup.tap.observed_ids(setup.tenant_id)) == sorted(a["id"] for a in agreements)
    for event in setup.observed():
        agreement_id = event.data.agreement.id  # type: ignore[attr-defined]
        assert sorted(a.id for a in event.data.additions) == sorted(
            x["id"] for x in setup.additions(agreement_id)
        )  # type: ignore[attr-defined]
        assert event.key == f"{setup.tenant_id}:{event.data.client_id}".encode()  # type: ignore[attr-defined]
    known = await setup.store.known_agreements(setup.tenant_id)
    assert sorted(known) == sorted(a["id"] for a in agreements)
    cursor = await setup.store.get_cursor(setup.tenant_id, cursors.SCOPE_ALL)
    assert cursor.watermark is not None and cursor.last_run["changed"] == len(agreements)


async def test_consecutive_polls_of_unchanged_data_emit_no_observed_event(setup: Setup) -> None:
    await setup.poller.poll_once()
    await setup.poller.poll_once()
    await setup.poller.poll_once()
    total = len(setup.all_agreements())
    events = await setup.tap.wait_for(setup.tenant_id, has_completed(3, total))
    await setup.tap.settle(1.0)
    assert len(setup.observed()) == total
    completed = [e for e in events if e.type == "sync.poll.completed"]
    assert [e.data.agreements_changed for e in completed[1:]] == [0, 0]  # type: ignore[attr-defined]


async def test_incremental_changes_are_each_emitted_once(make_setup: Callable[..., Setup]) -> None:
    s = make_setup(additions_sweep_period="1s")
    await s.poller.poll_once()
    await s.tap.wait_for(s.tenant_id, has_completed(1, len(s.all_agreements())))
    ctl = s.sim.control
    ids = sorted(a["id"] for a in s.all_agreements())
    edited, with_new_addition, with_changed_addition, with_cancelled_addition = ids[0], ids[1], ids[2], ids[3]
    ctl.update_agreement(edited, billAmount=777.25)
    ctl.create_addition(with_new_addition, quantity=4)
    changed_addition = s.additions(with_changed_addition)[0]["id"]
    ctl.update_addition(with_changed_addition, changed_addition, quantity=42)
    cancelled_addition = s.additions(with_cancelled_addition)[0]["id"]
    ctl.cancel_addition(with_cancelled_addition, cancelled_addition)
    new_agreement = ctl.create_agreement(s.all_agreements()[0]["company"]["id"], name="Brand new")
    new_company = ctl.add_company(name="Newco Ltd")
    new_client_agreement = ctl.create_agreement(new_company["id"], name="Newco - Managed")
    before = len(s.observed())
    await asyncio.sleep(1.1)  # one sweep period: every known agreement's additions are re-read
    await s.poller.poll_once()
    await s.tap.wait_for(s.tenant_id, has_completed(2, before + 6))
    await s.tap.settle(1.0)
    emitted = [e for e in s.observed()[before:]]
    by_id = {e.data.agreement.id: e for e in emitted}  # type: ignore[attr-defined]
    assert sorted(by_id) == sorted(
        [
            edited,
            with_new_addition,
            with_changed_addition,
            with_cancelled_addition,
            new_agreement["id"],
            new_client_agreement["id"],
        ]
    )
    assert len(emitted) == len(by_id)
    assert str(by_id[edited].data.agreement.bill_amount) == "777.25"  # type: ignore[attr-defined]
    assert len(by_id[with_new_addition].data.additions) == len(s.additions(with_new_addition))  # type: ignore[attr-defined]
    changed = {a.id: a for a in by_id[with_changed_addition].data.additions}  # type: ignore[attr-defined]
    assert changed[changed_addition].quantity == 42
    cancelled = {a.id: a for a in by_id[with_cancelled_addition].data.additions}  # type: ignore[attr-defined]
    assert cancelled[cancelled_addition].cancelled_date is not None
    assert by_id[new_client_agreement["id"]].data.client_id == str(new_company["id"])  # type: ignore[attr-defined]
    assert s.tap.of(s.tenant_id, "psa.agreement.removed") == []


async def test_a_change_made_during_a_run_is_not_lost(setup: Setup) -> None:
    await setup.poller.poll_once()
    ids = sorted(a["id"] for a in setup.all_agreements())
    target = ids[0]
    ctl = setup.sim.control
    ctl.touch_agreements(ids=ids)  # every agreement changes, so the next run reads all additions
    ctl.set_faults(latency_ms=40)  # slow enough to edit while the run is in progress

    def edit_later() -> None:
        threading.Event().wait(0.3)
        ctl.update_agreement(target, name="Edited mid-run")

    editor = threading.Thread(target=edit_later)
    editor.start()
    await setup.poller.poll_once()  # listed `target` before the edit
    editor.join()
    ctl.clear_faults()
    await setup.poller.poll_once()
    await setup.tap.wait_for(setup.tenant_id, has_completed(3, 2 * len(ids) + 1))
    await setup.tap.settle(1.0)
    latest = [e for e in setup.observed() if e.data.agreement.id == target][-1]  # type: ignore[attr-defined]
    assert latest.data.agreement.name == "Edited mid-run"  # type: ignore[attr-defined]


async def test_reconcile_emits_a_removal_only_for_an_agreement_that_answers_404(setup: Setup) -> None:
    await setup.poller.poll_once()
    ids = sorted(a["id"] for a in setup.all_agreements())
    setup.sim.control.delete_agreement(ids[4])
    await setup.poller.reconcile()
    events = await setup.tap.wait_for(
        setup.tenant_id,
        lambda ev: has_completed(2)(ev) and any(e.type == "psa.agreement.removed" for e in ev),
    )
    removed = [e for e in events if e.type == "psa.agreement.removed"]
    assert [e.data.agreement_id for e in removed] == [ids[4]]  # type: ignore[attr-defined]
    assert removed[0].data.evidence.method == "direct_get_404"  # type: ignore[attr-defined]
    assert ids[4] not in await setup.store.known_agreements(setup.tenant_id)


@pytest.mark.parametrize("fault", [{"error_rate": 1.0}, {"force_403_s": -1}])
async def test_a_500_or_403_during_reconcile_removes_nothing(setup: Setup, fault: dict[str, float]) -> None:
    await setup.poller.poll_once()
    ids = sorted(a["id"] for a in setup.all_agreements())
    setup.sim.control.delete_agreement(ids[0])
    setup.sim.control.set_faults(**fault)
    assert not await setup.poller.guarded("poller.reconcile", setup.poller.reconcile)
    events = await setup.tap.wait_for(setup.tenant_id, lambda ev: any(e.type == "sync.failed" for e in ev))
    assert [e for e in events if e.type == "psa.agreement.removed"] == []
    failed = next(e for e in events if e.type == "sync.failed")
    if "force_403_s" in fault:
        assert "Finance > Agreements" in failed.data.operator_action  # type: ignore[attr-defined]
        assert setup.poller.status == "paused"
    assert ids[0] in await setup.store.known_agreements(setup.tenant_id)


async def test_refresh_rereads_the_client_and_tags_events_with_the_command_id(setup: Setup) -> None:
    await setup.poller.poll_once()
    agreement = setup.all_agreements()[0]
    client_id = str(agreement["company"]["id"])
    addition = setup.additions(agreement["id"])[0]["id"]
    setup.sim.control.update_addition(agreement["id"], addition, quantity=11)
    await setup.poller.refresh_client(client_id, correlationid="cmd-refresh-1")
    events = await setup.tap.wait_for(setup.tenant_id, has_completed(2, len(setup.all_agreements()) + 1))
    refreshed = [
        e for e in events if e.type == "psa.agreement.observed" and e.correlationid == "cmd-refresh-1"
    ]
    assert [e.data.agreement.id for e in refreshed] == [agreement["id"]]  # type: ignore[attr-defined]


async def test_known_agreements_can_be_read_for_some_ids_only(make_setup: Callable[..., Setup]) -> None:
    s = make_setup()
    await s.poller.poll_once()
    ids = sorted(a["id"] for a in s.all_agreements())
    everything = await s.store.known_agreements(s.tenant_id)
    some = await s.store.known_agreements(s.tenant_id, [ids[1], ids[4], 999_999_999])
    assert sorted(some) == [ids[1], ids[4]]
    assert some[ids[4]] == everything[ids[4]]
    assert await s.store.known_agreements(s.tenant_id, []) == {}


async def test_a_deleted_addition_is_removed_after_a_404_and_the_snapshot_drops_it(
    make_setup: Callable[..., Setup],
) -> None:
    s = make_setup(additions_sweep_period="1s")
    assert s.store.tracks_addition_ids
    await s.poller.poll_once()
    target = sorted(a["id"] for a in s.all_agreements())[2]
    gone = s.additions(target)[0]["id"]
    known = (await s.store.known_agreements(s.tenant_id))[target]
    assert known.addition_ids is not None and gone in known.addition_ids
    s.sim.control.delete_addition(target, gone)
    await asyncio.sleep(1.1)  # one sweep period
    await s.poller.poll_once()
    events = await s.tap.wait_for(s.tenant_id, lambda ev: any(e.type == "psa.addition.removed" for e in ev))
    [removed] = [e for e in events if e.type == "psa.addition.removed"]
    assert (removed.data.agreement_id, removed.data.addition_id) == (target, gone)  # type: ignore[attr-defined]
    assert removed.data.evidence.method == "direct_get_404"  # type: ignore[attr-defined]
    after = (await s.store.known_agreements(s.tenant_id))[target]
    assert after.addition_ids is not None and gone not in after.addition_ids
