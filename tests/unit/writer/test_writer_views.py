"""Read models of the catalog dialog and of contracts with their ownership."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from services.writer.views import catalog_view, contract_view

T = datetime(2026, 1, 1, tzinfo=UTC)


def item(kind: str, agreement_id: int, addition_id: int | None, state: str) -> dict[str, object]:
    return {
        "contract_key": f"cw:acme:{kind}:{addition_id or agreement_id}",
        "kind": kind,
        "agreement_id": agreement_id,
        "addition_id": addition_id,
        "name": f"{kind} {addition_id or agreement_id}",
        "summary": {},
        "psa_last_updated": T,
        "removed_at": None,
        "state": state,
    }


def test_catalog_nests_additions_under_their_agreement_in_agreement_order() -> None:
    rows = [
        item("agreement", 2, None, "new"),
        item("addition", 1, 11, "updated"),
        item("agreement", 1, None, "synced"),
    ]
    view = catalog_view(rows)
    assert [(a["agreement_id"], a["state"]) for a in view] == [(1, "synced"), (2, "new")]
    assert [(x["addition_id"], x["state"]) for x in view[0]["additions"]] == [(11, "updated")]
    assert view[0]["psa_last_updated"] == T.isoformat()


def test_an_addition_without_its_agreement_is_still_listed() -> None:
    view = catalog_view([item("addition", 3, 30, "new")])
    assert view[0]["state"] is None
    assert view[0]["additions"][0]["addition_id"] == 30


def test_contract_view_marks_psa_owned_fields_locked_and_shows_overrides_with_the_psa_value() -> None:
    row = {
        "contract_key": "cw:acme:agreement:1",
        "client_id": "100",
        "kind": "agreement",
        "psa_synced": True,
        "status": "active",
        "billing_amount": Decimal("1500.00"),
        "billing_currency": "USD",
        "billing_cycle": "monthly",
        "name": "Ours",
        "psa_name": "PSA",
        "start_date": date(2026, 1, 1),
        "psa_start_date": date(2026, 1, 1),
        "local_overrides": {"name": "Ours"},
        "notes": "n",
        "tags": ["vip"],
    }
    view = contract_view(row)
    assert view["psa_owned"]["locked"] is True
    assert view["psa_owned"]["billing_cost"] == {"amount": "1500.00", "currency": "USD"}
    assert view["psa_seeded"]["name"] == {"value": "Ours", "psa_value": "PSA", "overridden": True}
    assert view["psa_seeded"]["start_date"] == {
        "value": "2026-01-01",
        "psa_value": "2026-01-01",
        "overridden": False,
    }
    assert view["local"]["tags"] == ["vip"]


def test_a_local_contract_has_unlocked_psa_owned_fields() -> None:
    view = contract_view({"contract_key": "k", "client_id": "1", "psa_synced": False})
    assert view["psa_owned"]["locked"] is False
