"""Authentication, scopes and tenancy of every endpoint, on a real gateway process with real tokens."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from gateway_support import GatewayRig, SseReader, bearer

from schemas.envelope import subject_of

# (method, path template, body, scope) of every endpoint; {client}, {contract}, {command} are filled in
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/v1/clients", None, "catalog:read"),
    ("GET", "/v1/clients/{client}/catalog", None, "catalog:read"),
    ("POST", "/v1/clients/{client}/sync", {"agreement_ids": [2]}, "sync:write"),
    ("PUT", "/v1/clients/{client}/auto-sync", {"enabled": True}, "sync:write"),
    ("POST", "/v1/clients/{client}/refresh", None, "sync:write"),
    ("GET", "/v1/clients/{client}/contracts", None, "contracts:read"),
    ("GET", "/v1/contracts/{contract}", None, "contracts:read"),
    ("PATCH", "/v1/contracts/{contract}", {"changes": {"notes": "x"}}, "contracts:write"),
    ("GET", "/v1/commands/{command}", None, "sync:write"),
    ("GET", "/v1/events", None, "events:read"),
]


def _path(template: str, client: str, contract: str, command: str) -> str:
    return template.format(client=client, contract=contract, command=command)


def _call(rig: GatewayRig, method: str, path: str, token: str | None, body: Any = None) -> httpx.Response:
    headers = bearer(token) if token else {}
    with httpx.Client(base_url=rig.url, timeout=15) as client:
        if path == "/v1/events":
            with client.stream(method, path, headers=headers) as response:
                response.read() if response.status_code != 200 else None
                return response
        return client.request(method, path, headers=headers, json=body)


@pytest.mark.parametrize(
    "kind",
    [
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "wrong_audience",
        "wrong_key",
        "alg_none",
        "hs256_with_public_key",
        "no_tenant",
        "garbage",
    ],
)
def test_an_invalid_token_is_refused_with_401_on_every_endpoint(rig: GatewayRig, kind: str) -> None:
    token = rig.tokens.bad_tokens(rig.a.tenant)[kind]
    for method, template, body, _ in ENDPOINTS:
        path = _path(template, "100", rig.a.agreement_key, str(uuid.uuid4()))
        response = _call(rig, method, path, token, body)
        assert response.status_code == 401, (kind, method, path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 401 and problem["type"].endswith("/unauthorized")
        assert "Bearer" in response.headers["www-authenticate"]
    assert not [c for c in rig.published_commands() if c["tenantid"] == rig.a.tenant and kind in str(c)]


def test_a_request_without_a_token_is_refused_with_401(rig: GatewayRig) -> None:
    for method, template, body, _ in ENDPOINTS:
        response = _call(
            rig, method, _path(template, "100", rig.a.agreement_key, str(uuid.uuid4())), None, body
        )
        assert response.status_code == 401, (method, template)


def test_a_token_without_the_endpoint_scope_is_refused_with_403(rig: GatewayRig) -> None:
    before = len(rig.published_commands())
    for method, template, body, scope in ENDPOINTS:
        others = [s for s in ("catalog:read", "contracts:read", "sync:write", "contracts:write", "events:read")
                  if s != scope and not (template.startswith("/v1/commands") and s == "contracts:write")]  # fmt: skip
        token = rig.tokens.token(rig.a.tenant, scopes=others)
        response = _call(
            rig, method, _path(template, "100", rig.a.agreement_key, str(uuid.uuid4())), token, body
        )
        assert response.status_code == 403, (method, template, response.text)
        assert response.json()["reason"] == "insufficient_scope"
    assert len(rig.published_commands()) == before


def test_tenant_a_can_neither_read_nor_change_anything_of_tenant_b(rig: GatewayRig) -> None:
    token_a = rig.tokens.token(rig.a.tenant)
    token_b = rig.tokens.token(rig.b.tenant)
    # a command of tenant B, so that B's command id exists
    accepted = _call(rig, "POST", "/v1/clients/200/refresh", token_b)
    assert accepted.status_code == 202, accepted.text
    b_command = accepted.json()["command_id"]
    before = len(rig.published_commands())
    for method, template, body, _ in ENDPOINTS:
        if template in ("/v1/clients", "/v1/events"):
            continue  # no object in the path: checked below
        # B-only client, B's contract keys, B's command
        for client, contract in (("200", rig.b.agreement_key), ("200", rig.b.addition_key)):
            path = _path(template, client, contract, b_command)
            response = _call(rig, method, path, token_a, body)
            assert response.status_code == 404, (method, path, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
    assert len(rig.published_commands()) == before, "a refused request published a command"

    listed = _call(rig, "GET", "/v1/clients", token_a).json()
    assert sorted(c["client_id"] for c in listed["clients"]) == ["100", "300"]
    # the shared client id 100: A sees only its own items and contracts
    catalog = _call(rig, "GET", "/v1/clients/100/catalog?state=new&state=updated&state=synced&state=removed",
                    token_a).json()  # fmt: skip
    keys = {a["contract_key"] for a in catalog["agreements"]} | {
        x["contract_key"] for a in catalog["agreements"] for x in a["additions"]
    }
    assert keys == {rig.a.agreement_key, rig.a.addition_key, rig.a.new_agreement_key}
    contracts = _call(rig, "GET", "/v1/clients/100/contracts", token_a).json()["contracts"]
    assert {c["contract_key"] for c in contracts} == {rig.a.agreement_key, rig.a.addition_key}


def test_the_tenant_comes_from_the_token_never_from_the_body(rig: GatewayRig) -> None:
    token_a = rig.tokens.token(rig.a.tenant, subject="alice@a")
    smuggled = _call(
        rig, "POST", "/v1/clients/100/sync", token_a,
        {"agreement_ids": [2], "tenant_id": rig.b.tenant, "requested_by": "mallory"},
    )  # fmt: skip
    assert smuggled.status_code == 422
    accepted = _call(
        rig, "POST", f"/v1/clients/100/sync?tenant_id={rig.b.tenant}", token_a, {"agreement_ids": [2]}
    )
    assert accepted.status_code == 202
    command_id = accepted.json()["command_id"]
    published = [c for c in rig.published_commands() if c["id"] == command_id]
    assert len(published) == 1
    command = published[0]
    assert command["tenantid"] == rig.a.tenant and command["data"]["tenant_id"] == rig.a.tenant
    assert command["subject"] == subject_of(rig.a.tenant, "100")
    assert command["data"]["requested_by"] == "alice@a"


def _event(tenant: str, client: str, n: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "contract-sync/tests",
        "type": "sync.catalog.changed",
        "time": "2026-12-05T10:00:00Z",
        "subject": subject_of(tenant, client),
        "datacontenttype": "application/json",
        "tenantid": tenant,
        "data": {"tenant_id": tenant, "client_id": client, "new": n, "updated": 0, "synced": 0, "removed": 0},
    }


def test_the_event_stream_of_tenant_a_never_carries_tenant_b_events_and_resumes(rig: GatewayRig) -> None:
    reader_a = SseReader(rig.url, rig.tokens.token(rig.a.tenant)).start()
    reader_b = SseReader(rig.url, rig.tokens.token(rig.b.tenant)).start()
    try:
        # both tenants active, interleaved, on the shared client id and on others
        events = []
        for n in range(30):
            events.append(_event(rig.a.tenant, "100", n))
            events.append(_event(rig.b.tenant, "100", n))
            events.append(_event(rig.b.tenant, "200", n))
        rig.produce_events(events)
        reader_a.wait_for(lambda e: e.data["data"]["new"] == 29)
        reader_b.wait_for(lambda e: e.data["data"]["new"] == 29 and e.data["data"]["client_id"] == "200")
        time.sleep(0.5)
        assert len(reader_a.events) == 30
        assert all(e.data["tenantid"] == rig.a.tenant for e in reader_a.events)
        assert all(e.type == "sync.catalog.changed" and e.id for e in reader_a.events)
        assert len(reader_b.events) == 60 and all(e.data["tenantid"] == rig.b.tenant for e in reader_b.events)
        assert {e.data["id"] for e in reader_a.events} == {e["id"] for e in events[0::3]}
        # resume after the 10th event: exactly the 20 later ones, in order
        resume_from = reader_a.events[9]
    finally:
        reader_a.close()
        reader_b.close()
    resumed = SseReader(rig.url, rig.tokens.token(rig.a.tenant), last_event_id=resume_from.id).start()
    try:
        resumed.wait_for(lambda e: e.data["data"]["new"] == 29)
        time.sleep(0.3)
        per_client = [e.data["data"]["new"] for e in resumed.events]
        assert per_client == list(range(10, 30))
    finally:
        resumed.close()


def test_the_event_stream_sends_heartbeats_while_idle(rig: GatewayRig) -> None:
    reader = SseReader(rig.url, rig.tokens.token(rig.a.tenant)).start()
    try:
        deadline = time.monotonic() + 10
        while "heartbeat" not in reader.comments and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "heartbeat" in reader.comments
    finally:
        reader.close()
