"""The walkthrough through the Sync API only (HTTP + SSE), on the running pipeline with its gateway,
while a second tenant polls the same ConnectWise at the same time.

refresh -> catalog -> select -> contracts appear -> PSA-owned edit refused -> local edit accepted ->
auto-sync on -> a ConnectWise change arrives. Every outcome is read from `GET /v1/commands/{id}`,
the API's reads and `/v1/events`; nothing here reads PostgreSQL or Kafka directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest
from e2e_support import E2E
from gateway_support import SseReader, bearer

T = TypeVar("T")


def _wait(what: str, probe: Callable[[], T | None], timeout_s: float = 60) -> T:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (httpx.HTTPError, KeyError, ValueError) as error:
            value, last = None, error
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last error {last!r})")


@pytest.fixture(scope="module")
def other_tenant(e2e: E2E) -> str:
    return e2e.pipeline.options.extra_tenants[0]


@pytest.fixture(scope="module")
def api(e2e: E2E) -> Iterator[httpx.Client]:
    assert e2e.pipeline.gateway_url
    token = e2e.pipeline.gateway_token(subject="ops@msp.example")
    with httpx.Client(base_url=e2e.pipeline.gateway_url, headers=bearer(token), timeout=30) as client:
        yield client


def _command(api: httpx.Client, command_id: str, status: str = "applied") -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        state: dict[str, Any] = api.get(f"/v1/commands/{command_id}").json()
        if state["status"] not in ("pending", status):
            raise AssertionError(f"command {command_id} ended {state['status']}: {state}")
        return state if state["status"] == status else None

    return _wait(f"command {command_id} {status}", probe)


def test_the_walkthrough_through_the_http_api_only(e2e: E2E, api: httpx.Client, other_tenant: str) -> None:
    pipeline = e2e.pipeline
    # a company of this test's own: two agreements with two additions each, one without additions
    company = pipeline.control.add_company(name=f"Gateway {e2e.tenant}")
    client = str(company["id"])
    for n in range(3):
        agreement = pipeline.control.create_agreement(
            company["id"], type="Managed Services", billAmount=100 + n, billingCycle="Monthly"
        )
        for _ in range(2 if n < 2 else 0):
            pipeline.control.create_addition(agreement["id"], quantity=3, unitPrice=5)
    stream_a = SseReader(pipeline.gateway_url or "", pipeline.gateway_token(scopes=["events:read"])).start()
    stream_b = SseReader(
        pipeline.gateway_url or "", pipeline.gateway_token(scopes=["events:read"], tenant_id=other_tenant)
    ).start()
    try:
        # 1. refresh (the poller sees the new company by its next poll, the refresh reads it at once)
        _wait(
            "the client listed",
            lambda: client in {c["client_id"] for c in api.get("/v1/clients").json()["clients"]},
        )
        refreshed = api.post(
            f"/v1/clients/{client}/refresh", headers={"Idempotency-Key": f"refresh-{client}"}
        )
        assert refreshed.status_code == 202, refreshed.text
        refresh_state = _command(api, refreshed.json()["command_id"])
        assert refresh_state["requested_by"] == "ops@msp.example"
        assert [e["type"] for e in refresh_state["events"]] == ["sync.poll.completed"]

        # 2. catalog: every agreement new, additions nested
        catalog = api.get(f"/v1/clients/{client}/catalog").json()
        assert catalog["states"] == ["new", "updated"] and not catalog["auto_sync"]
        agreements = catalog["agreements"]
        assert len(agreements) == 3 and all(a["state"] == "new" for a in agreements)
        assert any(a["additions"] for a in agreements)
        assert all(x["state"] == "new" for a in agreements for x in a["additions"])

        # 3. select two agreements and the additions of the first
        chosen = sorted(agreements, key=lambda a: -len(a["additions"]))[:2]
        additions = [x["addition_id"] for x in chosen[0]["additions"]]
        body = {"agreement_ids": [a["agreement_id"] for a in chosen], "addition_ids": additions}
        selected = api.post(f"/v1/clients/{client}/sync", json=body)
        assert selected.status_code == 202, selected.text
        select_state = _command(api, selected.json()["command_id"])
        _wait(
            "every selected item created",
            lambda: (
                _command(api, selected.json()["command_id"])["counts"].get("created") == 2 + len(additions)
            ),
        )

        # 4. contracts appear, PSA-owned fields locked
        contracts = api.get(f"/v1/clients/{client}/contracts").json()["contracts"]
        expected = {a["contract_key"] for a in chosen} | {x["contract_key"] for x in chosen[0]["additions"]}
        assert {c["contract_key"] for c in contracts} == expected
        assert all(c["psa_owned"]["locked"] for c in contracts)
        assert select_state["command_type"] == "sync.command.select"
        after_select = api.get(f"/v1/clients/{client}/catalog", params=[("state", "synced")]).json()
        assert {a["contract_key"] for a in after_select["agreements"]} == {a["contract_key"] for a in chosen}

        # 5. a PSA-owned edit is refused at once, nothing published
        key = chosen[0]["contract_key"]
        refused = api.patch(f"/v1/contracts/{key}", json={"changes": {"status": "cancelled"}})
        assert refused.status_code == 422 and refused.json()["reason"] == "psa_owned_field"

        # 6. a local edit is accepted and applied
        edited = api.patch(
            f"/v1/contracts/{key}", json={"changes": {"notes": "renewal call in May", "name": "Ours"}}
        )
        assert edited.status_code == 202
        edit_state = _command(api, edited.json()["command_id"])
        assert edit_state["events"][0]["type"] == "sync.edit.applied"
        contract = api.get(f"/v1/contracts/{key}").json()
        assert contract["local"]["notes"] == "renewal call in May"
        assert contract["psa_seeded"]["name"]["overridden"] is True

        # 7. auto-sync on: manual sync refused with the reason
        auto = api.put(f"/v1/clients/{client}/auto-sync", json={"enabled": True})
        assert auto.status_code == 202
        _command(api, auto.json()["command_id"])
        _wait("auto-sync shown", lambda: api.get(f"/v1/clients/{client}/catalog").json()["auto_sync"])
        manual = api.post(f"/v1/clients/{client}/sync", json=body)
        assert manual.status_code == 409 and manual.json()["reason"] == "auto_sync_enabled"

        # 8. a ConnectWise change arrives without any command
        agreement_id = chosen[1]["agreement_id"]
        second_key = chosen[1]["contract_key"]
        before = Decimal(api.get(f"/v1/contracts/{second_key}").json()["psa_owned"]["billing_cost"]["amount"])
        new_amount = before + Decimal("99.50")
        pipeline.control.update_agreement(agreement_id, billAmount=float(new_amount))
        _wait(
            "the PSA change applied",
            lambda: (
                Decimal(api.get(f"/v1/contracts/{second_key}").json()["psa_owned"]["billing_cost"]["amount"])
                == new_amount
            ),
            timeout_s=60,
        )
        ours = {refreshed.json()["command_id"], selected.json()["command_id"], edited.json()["command_id"]}
        stream_a.wait_for(
            lambda e: (
                e.type == "sync.contracts.applied"
                and e.data["subject"] == f"{e2e.tenant}:{client}"
                and e.data.get("correlationid") not in ours
            )
        )
        # the stream carried this walkthrough's outcomes, by correlation id
        seen = {e.data.get("correlationid") for e in stream_a.events}
        assert {
            refreshed.json()["command_id"],
            selected.json()["command_id"],
            edited.json()["command_id"],
        } <= seen
        # tenant B was active (its poller saw the same ConnectWise change) and the streams never mixed
        stream_b.wait_for(lambda e: e.type in ("sync.poll.completed", "sync.catalog.changed"), timeout_s=60)
        assert stream_a.events and all(e.data["tenantid"] == e2e.tenant for e in stream_a.events)
        assert all(e.data["tenantid"] == other_tenant for e in stream_b.events)
        # and tenant B cannot see or touch tenant A's objects
        token_b = pipeline.gateway_token(tenant_id=other_tenant)
        with httpx.Client(base_url=pipeline.gateway_url or "", headers=bearer(token_b), timeout=30) as b:
            assert b.get(f"/v1/contracts/{key}").status_code == 404
            assert b.patch(f"/v1/contracts/{key}", json={"changes": {"notes": "x"}}).status_code == 404
            assert b.get(f"/v1/commands/{edited.json()['command_id']}").status_code == 404
            b_contracts = b.get(f"/v1/clients/{client}/contracts")
            assert b_contracts.status_code in (200, 404)
            if b_contracts.status_code == 200:
                assert all(
                    c["contract_key"].startswith(f"cw:{other_tenant}:")
                    for c in b_contracts.json()["contracts"]
                )
    finally:
        stream_a.close()
        stream_b.close()
