"""The Sync API's catalog compares content, not only versions: an item changed a second time within
ConnectWise's one-second `lastUpdated` (same version, another `psa_digest` than its contract's) is
`updated` with its field changes, one with its contract's digest is `synced` (real PostgreSQL)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from gateway_support import GatewayRig, bearer, unseed

from services.common.db.tables import catalog_items, contracts
from services.gateway import models

VERSION = datetime(2025, 3, 14, 16, 2, 11, tzinfo=UTC)
FIRST_DIGEST, SECOND_DIGEST = "0123456789abcdef", "fedcba9876543210"


@pytest.fixture
def tenant(rig: GatewayRig) -> Iterator[str]:
    """A tenant of its own: agreement 1 changed twice within one second (the contract holds the
    first change), agreement 2 synced with the same version and digest."""
    name = f"gwss-{secrets.token_hex(4)}"
    now = datetime.now(UTC)

    def item(agreement_id: int, amount: str, digest: str) -> dict[str, object]:
        return {"contract_key": f"cw:{name}:agreement:{agreement_id}", "tenant_id": name, "client_id": "100",
                "kind": "agreement", "agreement_id": agreement_id, "addition_id": None,
                "name": f"Managed {agreement_id}", "summary": {"bill_amount": amount, "currency": "USD"},
                "psa_last_updated": VERSION, "observed_at": now, "psa_digest": digest}  # fmt: skip

    def contract(agreement_id: int, amount: str, digest: str) -> dict[str, object]:
        return {"contract_key": f"cw:{name}:agreement:{agreement_id}", "tenant_id": name, "client_id": "100",
                "psa": "connectwise", "psa_synced": True, "kind": "agreement", "agreement_id": agreement_id,
                "addition_id": None, "parent_contract_key": None, "psa_last_updated": VERSION,
                "psa_digest": digest, "status": "active", "billing_amount": amount, "billing_currency": "USD",
                "billing_cycle": "monthly", "category": "recurring", "name": f"Managed {agreement_id}",
                "psa_name": f"Managed {agreement_id}", "explanation": {}}  # fmt: skip

    with rig.engine.begin() as conn:
        conn.execute(
            sa.insert(catalog_items), [item(1, "115.50", SECOND_DIGEST), item(2, "20.00", FIRST_DIGEST)]
        )
        conn.execute(
            sa.insert(contracts), [contract(1, "115.00", FIRST_DIGEST), contract(2, "20.00", FIRST_DIGEST)]
        )
    try:
        yield name
    finally:
        unseed(rig.engine, name)


def test_a_second_change_within_the_same_second_is_updated_with_its_field_changes(
    rig: GatewayRig, tenant: str
) -> None:
    token = rig.tokens.token(tenant, scopes=["catalog:read"])
    with httpx.Client(base_url=rig.url, headers=bearer(token), timeout=15) as http:
        response = http.get("/v1/clients/100/catalog", params=[("state", "updated"), ("state", "synced")])
    assert response.status_code == 200, response.text
    catalog = models.Catalog.model_validate(response.json())
    assert catalog.counts.model_dump() == {"new": 0, "updated": 1, "synced": 1, "removed": 0}
    by_id = {a.agreement_id: a for a in catalog.agreements}
    assert by_id[1].state == "updated"
    assert by_id[1].psa_last_updated == VERSION
    assert [c.model_dump() for c in by_id[1].changes or []] == [
        {"field": "billing_cost.amount", "contract_value": "115.00", "psa_value": "115.50"}
    ]
    assert by_id[2].state == "synced"
