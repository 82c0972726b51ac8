"""The Sync API's endpoints on the real stack: catalog and contracts read from PostgreSQL, commands
published to Kafka exactly once per Idempotency-Key, outcomes found by correlation id, limits."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import sqlalchemy as sa
from gateway_support import GatewayRig, bearer, seed, unseed

from schemas.envelope import subject_of
from services.common.db.roles import OWNER, SYNC_PATH
from services.gateway import models


def _client(rig: GatewayRig, token: str) -> httpx.Client:
    return httpx.Client(base_url=rig.url, headers=bearer(token), timeout=15)


def test_the_catalog_lists_new_and_updated_items_by_default_with_the_field_changes_of_updated_ones(
    rig: GatewayRig,
) -> None:
    with _client(rig, rig.tokens.token(rig.a.tenant, scopes=["catalog:read"])) as http:
        response = http.get("/v1/clients/100/catalog")
        assert response.status_code == 200, response.text
        catalog = models.Catalog.model_validate(response.json())
        assert catalog.states == ["new", "updated"]
        assert catalog.counts.model_dump() == {"new": 1, "updated": 1, "synced": 1, "removed": 0}
        by_id = {a.agreement_id: a for a in catalog.agreements}
        assert set(by_id) == {1, 2}
        assert by_id[2].state == "new" and by_id[2].additions == []
        assert by_id[1].state == "synced"  # listed because its addition is updated
        (addition,) = by_id[1].additions
        assert addition.state == "updated" and addition.addition_id == 11
        # 12 billable x 5.00 in the PSA against 50.00 on the contract
        assert [c.model_dump() for c in addition.changes or []] == [
            {"field": "billing_cost.amount", "contract_value": "50.00", "psa_value": "60.00"}
        ]
        assert catalog.auto_sync is False and catalog.last_synced_at is not None
        everything = models.Catalog.model_validate(
            http.get("/v1/clients/100/catalog", params=[("state", "synced")]).json()
        )
        assert [(a.agreement_id, a.state, a.additions) for a in everything.agreements] == [(1, "synced", [])]
        assert http.get("/v1/clients/100/catalog?state=bogus").status_code == 422


def test_contracts_show_ownership_per_field(rig: GatewayRig) -> None:
    with _client(rig, rig.tokens.token(rig.a.tenant, scopes=["contracts:read"])) as http:
        listed = models.ContractList.model_validate(http.get("/v1/clients/100/contracts").json())
        assert [c.contract_key for c in listed.contracts] == [rig.a.agreement_key, rig.a.addition_key]
        one = models.Contract.model_validate(http.get(f"/v1/contracts/{rig.a.agreement_key}").json())
        assert one.psa_owned.locked is True and one.psa_owned.billing_cost.amount == "100.00"
        assert one.psa_seeded["name"].psa_value == f"Managed {rig.a.tenant}"
        assert one.psa_seeded["name"].overridden is False
        assert one.ownership["status"] == "psa_owned" and one.ownership["notes"] == "local"
        assert one.ownership["name"] == "psa_seeded"
        assert one.explanation["status"].startswith("agreementStatus")


def test_a_sync_is_published_once_with_the_token_subject_and_answers_202(rig: GatewayRig) -> None:
    token = rig.tokens.token(rig.a.tenant, scopes=["sync:write"], subject="bob@a")
    with _client(rig, token) as http:
        response = http.post("/v1/clients/100/sync", json={"agreement_ids": [2], "addition_ids": [11]})
    assert response.status_code == 202, response.text
    command_id = response.json()["command_id"]
    assert response.headers["location"] == f"/v1/commands/{command_id}"
    (command,) = [c for c in rig.published_commands() if c["id"] == command_id]
    assert command["type"] == "sync.command.select"
    assert command["data"] == {
        "tenant_id": rig.a.tenant, "client_id": "100", "agreement_ids": [2], "addition_ids": [11],
        "requested_by": "bob@a",
    }  # fmt: skip


def test_an_idempotency_key_retry_publishes_exactly_one_command(rig: GatewayRig) -> None:
    key = f"retry-{uuid.uuid4()}"
    token = rig.tokens.token(rig.a.tenant)
    answers = []
    with _client(rig, token) as http:
        for _ in range(3):
            response = http.post(
                "/v1/clients/100/sync", json={"agreement_ids": [2]}, headers={"Idempotency-Key": key}
            )
            assert response.status_code == 202, response.text
            answers.append(response.json()["command_id"])
        other = http.post(
            "/v1/clients/100/sync", json={"agreement_ids": [1]}, headers={"Idempotency-Key": key}
        )
        edit_key = f"edit-{uuid.uuid4()}"
        edits = [
            http.patch(
                f"/v1/contracts/{rig.a.agreement_key}",
                json={"changes": {"notes": "retry"}},
                headers={"Idempotency-Key": edit_key},
            ).json()["command_id"]
            for _ in range(2)
        ]
    assert len(set(answers)) == 1
    assert other.status_code == 422 and other.json()["reason"] == "idempotency_key_reused"
    published = rig.published_commands()
    assert [c["id"] for c in published].count(answers[0]) == 1
    assert len(set(edits)) == 1 and [c["id"] for c in published].count(edits[0]) == 1
    # the same key in another tenant is another request
    with _client(rig, rig.tokens.token(rig.b.tenant)) as http:
        b = http.post("/v1/clients/100/sync", json={"agreement_ids": [2]}, headers={"Idempotency-Key": key})
    assert b.status_code == 202 and b.json()["command_id"] != answers[0]


def test_a_sync_while_auto_sync_is_on_is_refused_with_409_and_publishes_nothing(rig: GatewayRig) -> None:
    before = len(rig.published_commands())
    with _client(rig, rig.tokens.token(rig.a.tenant)) as http:
        response = http.post("/v1/clients/300/sync", json={"agreement_ids": [100]})
    assert response.status_code == 409
    assert response.json()["reason"] == "auto_sync_enabled"
    assert len(rig.published_commands()) == before


def test_editing_a_psa_owned_field_is_refused_with_422_and_a_local_edit_is_accepted(rig: GatewayRig) -> None:
    before = len(rig.published_commands())
    with _client(rig, rig.tokens.token(rig.a.tenant)) as http:
        refused = http.patch(
            f"/v1/contracts/{rig.a.agreement_key}", json={"changes": {"billing_cost": "1", "notes": "x"}}
        )
        assert refused.status_code == 422
        assert refused.json()["reason"] == "psa_owned_field" and refused.json()["fields"] == ["billing_cost"]
        unknown = http.patch(f"/v1/contracts/{rig.a.agreement_key}", json={"changes": {"colour": "red"}})
        assert unknown.status_code == 422 and unknown.json()["reason"] == "unknown_field"
        assert len(rig.published_commands()) == before
        accepted = http.patch(
            f"/v1/contracts/{rig.a.agreement_key}", json={"changes": {"notes": "call back", "name": "Mine"}}
        )
    assert accepted.status_code == 202
    (command,) = [c for c in rig.published_commands() if c["id"] == accepted.json()["command_id"]]
    assert command["type"] == "contract.command.edit"
    assert command["data"]["contract_id"] == rig.a.agreement_key
    assert command["data"]["changes"] == {"notes": "call back", "name": "Mine"}


def _outcome(
    tenant: str, client: str, command_id: str, event_type: str, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": "contract-sync/tests", "type": event_type,
        "time": "2026-12-05T10:00:00Z", "subject": subject_of(tenant, client), "tenantid": tenant,
        "correlationid": command_id, "datacontenttype": "application/json",
        "data": {"tenant_id": tenant, "client_id": client, **data},
    }  # fmt: skip


def _wait_status(http: httpx.Client, command_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        state: dict[str, Any] = http.get(f"/v1/commands/{command_id}").json()
        if state.get("status") == status or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def test_a_command_status_is_pending_until_its_outcome_event_arrives(rig: GatewayRig) -> None:
    with _client(rig, rig.tokens.token(rig.a.tenant)) as http:
        applied_id = http.post("/v1/clients/100/sync", json={"agreement_ids": [2]}).json()["command_id"]
        rejected_id = http.post("/v1/clients/100/sync", json={"agreement_ids": [3]}).json()["command_id"]
        state = models.CommandState.model_validate(http.get(f"/v1/commands/{applied_id}").json())
        assert state.status == "pending" and state.command_type == "sync.command.select"
        rig.produce_events(
            [
                _outcome(rig.a.tenant, "100", applied_id, "sync.contracts.applied",
                         {"created": 1, "updated": 0, "unchanged": 0, "retired": 0,
                          "last_synced_at": "2026-12-05T10:00:00Z"}),
                _outcome(rig.a.tenant, "100", rejected_id, "sync.command.rejected",
                         {"command_id": rejected_id, "command_type": "sync.command.select",
                          "reason": "not_in_catalog", "message": "agreement 3 is not in the catalog"}),
                # another tenant's event naming A's command id is not A's outcome
                _outcome(rig.b.tenant, "100", applied_id, "sync.command.rejected",
                         {"command_id": applied_id, "command_type": "sync.command.select",
                          "reason": "cross_tenant", "message": "forged"}),
            ]
        )  # fmt: skip
        applied = models.CommandState.model_validate(_wait_status(http, applied_id, "applied"))
        rejected = models.CommandState.model_validate(_wait_status(http, rejected_id, "rejected"))
    assert applied.status == "applied" and applied.counts["created"] == 1 and applied.reason is None
    assert [e.type for e in applied.events] == ["sync.contracts.applied"]
    assert rejected.status == "rejected" and rejected.reason == "not_in_catalog"
    assert rejected.message == "agreement 3 is not in the catalog"


def test_limits_body_size_and_ids_per_request(rig: GatewayRig) -> None:
    before = len(rig.published_commands())
    with _client(rig, rig.tokens.token(rig.a.tenant)) as http:
        too_big = http.patch(
            f"/v1/contracts/{rig.a.agreement_key}", json={"changes": {"notes": "x" * 300_000}}
        )
        assert too_big.status_code == 413 and too_big.json()["type"].endswith("/body-too-large")
        too_many = http.post("/v1/clients/100/sync", json={"agreement_ids": list(range(1, 10_002))})
        assert too_many.status_code == 422
        empty = http.post("/v1/clients/100/sync", json={})
        assert empty.status_code == 422
        assert empty.headers["content-type"].startswith("application/problem+json")
    assert len(rig.published_commands()) == before


def test_the_openapi_document_is_served(rig: GatewayRig) -> None:
    document = httpx.get(f"{rig.url}/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.1")
    assert "/v1/clients/{client}/catalog" in document["paths"]


def _cache_hits(http: httpx.Client) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith('contract_sync_gateway_catalog_cache_total{result="hit"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_repeated_catalog_read_is_answered_from_the_cache_until_any_row_it_depends_on_changes(
    rig: GatewayRig,
) -> None:
    tenant = f"gwc-{uuid.uuid4().hex[:8]}"
    seeded = seed(rig.engine, tenant, ["100"], auto_sync_client=None)
    try:
        with _client(rig, rig.tokens.token(tenant, scopes=["catalog:read"])) as http:

            def catalog() -> dict[str, Any]:
                response = http.get("/v1/clients/100/catalog")
                assert response.status_code == 200, response.text
                document: dict[str, Any] = response.json()
                return document

            def addition(document: dict[str, Any]) -> dict[str, Any] | None:
                for agreement in document["agreements"]:
                    for item in agreement["additions"]:
                        if item["addition_id"] == 11:
                            return dict(item)
                return None

            def change(sql: str, role: str = SYNC_PATH, **params: Any) -> None:
                with rig.engine.begin() as conn:
                    conn.execute(sa.text(f'SET LOCAL ROLE "{role}"'))  # the writer's role (the owner deletes)
                    conn.execute(sa.text(sql), {"t": tenant, **params})

            first = catalog()
            hits = _cache_hits(http)
            assert catalog() == first
            assert _cache_hits(http) == hits + 1, "an unchanged catalog is answered from the cache"

            # the catalog item's PSA values (the diff's PSA side)
            change("UPDATE catalog_items SET summary = summary || '{\"unit_price\": \"6.00\"}'::jsonb"
                   " WHERE tenant_id = :t AND addition_id = 11")  # fmt: skip
            item = addition(catalog())
            assert item is not None and item["changes"][0]["psa_value"] == "72.00"
            # the contract's side of the diff
            change("UPDATE contracts SET billing_amount = 72.00 WHERE tenant_id = :t AND addition_id = 11")
            item = addition(catalog())
            assert item is not None and item["changes"] == []
            # the contract's version decides the state: synced items leave the default listing
            change("UPDATE contracts SET psa_last_updated = now() + interval '1 day' WHERE contract_key = :k",
                   k=seeded.addition_key)  # fmt: skip
            assert addition(catalog()) is None
            # the client's sync settings
            change("UPDATE client_sync_settings SET auto_sync = true WHERE tenant_id = :t")
            assert catalog()["auto_sync"] is True
            # new and deleted catalog items
            change("INSERT INTO catalog_items (contract_key, tenant_id, client_id, kind, agreement_id, name,"
                   " summary, psa_last_updated, observed_at) VALUES (:k, :t, '100', 'agreement', 7, 'Seven',"
                   " '{}'::jsonb, now(), now())", k=f"cw:{tenant}:agreement:7")  # fmt: skip
            assert 7 in [a["agreement_id"] for a in catalog()["agreements"]]
            change("DELETE FROM catalog_items WHERE tenant_id = :t AND agreement_id = 7", role=OWNER)
            assert 7 not in [a["agreement_id"] for a in catalog()["agreements"]]
            assert catalog() == catalog()
    finally:
        unseed(rig.engine, tenant)
