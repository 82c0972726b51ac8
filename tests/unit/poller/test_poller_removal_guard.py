"""One removal guard on every path: only ConnectWise's own NotFound proves a removal, and a budget
per run and per tenant bounds how many agreements any path may remove (`removals.RemovalChecks`).

Against the ConnectWise simulator in process; its `proxy_404_rate` fault answers GETs by id with a
proxy's HTML 404 while lists work, its `missing_agreements` fault answers ConnectWise's NotFound for
agreements that still exist (as a narrowed API-member scope does).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from poller_fakes import make_simulator
from test_poller_service import Rig, agreement_ids, make_rig

from services.poller.connectwise import ConnectWiseForeignNotFoundError, ConnectWiseNotFoundError
from services.poller.reconcile import RemovalBudget, RemovalGuard


def removed(rig: Rig) -> list[int]:
    return sorted(e.data.agreement_id for e in rig.publisher.of_type("psa.agreement.removed"))  # type: ignore[attr-defined]


def failures(rig: Rig) -> list[str]:
    return [e.data.error_code for e in rig.publisher.of_type("sync.failed")]  # type: ignore[attr-defined]


def client_of(rig: Rig, agreement_id: int) -> str:
    return str(rig.sim.store.agreements.get(agreement_id).data["company"]["id"])  # type: ignore[union-attr]


async def test_a_proxy_404_on_every_get_by_id_removes_nothing_on_any_path() -> None:
    rig = await make_rig(additions_sweep_period="1s")
    await rig.poller.poll_once()
    ids = agreement_ids(rig.sim)
    rig.sim.store.delete_agreement(ids[0])  # a reconcile candidate: missing from the list
    rig.sim.faults.update({"proxy_404_rate": 1.0})
    rig.publisher.clear()
    await asyncio.sleep(1.1)  # the sweep period elapsed: the next poll re-reads every agreement

    runs = {
        "sweep": rig.poller.poll_once,
        "refresh": lambda: rig.poller.refresh_client(client_of(rig, ids[3])),
        "reconcile": rig.poller.reconcile,
        "callback": lambda: rig.poller.recheck_agreement(ids[5], deleted=True),
    }
    for stage, run in runs.items():
        assert not await rig.poller.guarded(f"poller.{stage}", run), stage

    assert removed(rig) == []
    assert rig.publisher.of_type("psa.addition.removed") == []
    assert failures(rig).count("ConnectWiseForeignNotFoundError") == len(runs)
    assert len(rig.store.snapshots) == len(ids)  # every agreement still known
    await rig.poller.client.aclose()


async def test_a_genuine_not_found_for_one_agreement_removes_exactly_that_one() -> None:
    rig = await make_rig()
    await rig.poller.poll_once()
    target = agreement_ids(rig.sim)[4]
    rig.sim.faults.update({"missing_agreements": [target]})
    rig.publisher.clear()

    await rig.poller.refresh_client(client_of(rig, target))

    assert removed(rig) == [target]
    [event] = rig.publisher.of_type("psa.agreement.removed")
    assert event.data.evidence.method == "direct_get_404"  # type: ignore[attr-defined]
    await rig.poller.client.aclose()


async def test_the_sweep_removes_no_more_than_the_budget_and_reports_the_rest() -> None:
    rig = await make_rig(additions_sweep_period="1s")
    await rig.poller.poll_once()
    ids = agreement_ids(rig.sim)
    for agreement_id in ids[:6]:  # half the tenant answers NotFound at once
        rig.sim.store.delete_agreement(agreement_id)
    rig.publisher.clear()
    await asyncio.sleep(1.1)

    await rig.poller.poll_once()

    budget = rig.poller.removal_budget.allowance(len(ids))
    assert budget == 2  # max(floor 2, 20 % of 12)
    assert len(removed(rig)) == budget
    assert failures(rig) == ["removal_guard"]
    assert len(rig.store.snapshots) == len(ids) - budget  # the held ones stay known
    await rig.poller.client.aclose()


async def test_a_callback_after_a_run_spent_the_tenants_budget_is_held_too() -> None:
    rig = await make_rig()
    await rig.poller.poll_once()
    ids = agreement_ids(rig.sim)
    for agreement_id in ids[:3]:
        rig.sim.store.delete_agreement(agreement_id)
    rig.publisher.clear()
    for agreement_id in ids[:2]:
        await rig.poller.recheck_agreement(agreement_id, deleted=True)  # two runs, one removal each
    assert removed(rig) == ids[:2]

    await rig.poller.recheck_agreement(ids[2], deleted=True)

    assert removed(rig) == ids[:2]  # the tenant's window allows 2 of 12
    assert failures(rig) == ["removal_guard"]
    assert ("t-unit", ids[2]) in rig.store.snapshots
    await rig.poller.client.aclose()


def test_the_tenant_budget_frees_up_once_the_window_has_passed() -> None:
    budget = RemovalBudget(RemovalGuard(max_ratio=0.1, floor=1), window=timedelta(hours=1))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert budget.allowance(100) == 10
    assert all(budget.take(start, 100, this_run=0) is None for _ in range(10))
    assert budget.take(start + timedelta(minutes=59), 100, this_run=0) is not None
    assert budget.take(start + timedelta(hours=1), 100, this_run=0) is None
    assert "per run" in (budget.take(start + timedelta(hours=3), 100, this_run=10) or "")


@pytest.mark.parametrize(
    ("body", "headers", "error"),
    [
        (
            b'{"code": "NotFound", "message": "Agreement 7 not found"}',
            {"content-type": "application/json"},
            ConnectWiseNotFoundError,
        ),
        (
            b"<html><h1>404 Not Found</h1>nginx</html>",
            {"content-type": "text/html"},
            ConnectWiseForeignNotFoundError,
        ),
        (
            b'{"code": "ConnectWiseApi", "message": "The endpoint does not exist."}',
            {"content-type": "application/json"},
            ConnectWiseForeignNotFoundError,
        ),
        (b'{"error": "not found"}', {"content-type": "application/json"}, ConnectWiseForeignNotFoundError),
    ],
)
async def test_only_connectwises_own_not_found_body_is_a_not_found_error(
    body: bytes, headers: dict[str, str], error: type[Exception]
) -> None:
    sim = make_simulator()

    def answer(request: httpx.Request) -> httpx.Response:
        if "/finance/agreements/7" in request.url.path:
            return httpx.Response(404, content=body, headers=headers)
        return httpx.Response(200, json={"Codebase": "v2025_1/"})

    from services.poller.connectwise import ConnectWiseClient

    rig = await make_rig(sim)
    client = ConnectWiseClient(rig.poller.client.connection, transport=httpx.MockTransport(answer))
    async with client:
        with pytest.raises(error) as raised:
            await client.get_agreement(7)
    assert type(raised.value) is error
    assert getattr(raised.value, "proves_absence", False) is (error is ConnectWiseNotFoundError)
    await rig.poller.client.aclose()
