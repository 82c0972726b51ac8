"""Read models for the CLIs and UIs: the import dialog's list and contracts with their ownership (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from schemas.ownership import LOCAL, PSA_SEEDED


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def catalog_view(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Agreements in order, each with its additions nested under it (as the Sync-from-PSA dialog shows).

    An addition whose agreement is not in the catalog is listed under a placeholder agreement entry
    (`state` None) so nothing observed is hidden.
    """
    agreements: dict[int, dict[str, Any]] = {}
    for row in rows:
        item = {
            "contract_key": row["contract_key"],
            "state": row["state"],
            "name": row["name"],
            "psa_last_updated": _plain(row["psa_last_updated"]),
            "removed_at": _plain(row["removed_at"]),
            "summary": dict(row["summary"] or {}),
        }
        agreement_id = int(row["agreement_id"])
        entry = agreements.setdefault(
            agreement_id,
            {
                "agreement_id": agreement_id,
                "contract_key": None,
                "state": None,
                "name": None,
                "additions": [],
            },
        )
        if row["kind"] == "agreement":
            entry.update(item)
        else:
            entry["additions"].append({"addition_id": int(row["addition_id"]), **item})
    return [agreements[k] for k in sorted(agreements)]


def contract_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """One contract grouped by ownership: PSA-owned (locked while PSA-synced), PSA-seeded (effective
    value, PSA value, whether overridden locally) and local fields."""
    overrides = row.get("local_overrides") or {}
    synced = bool(row.get("psa_synced"))
    return {
        "contract_key": row["contract_key"],
        "client_id": row["client_id"],
        "kind": row.get("kind"),
        "parent_contract_key": row.get("parent_contract_key"),
        "psa_synced": synced,
        "removed_in_psa_at": _plain(row.get("removed_in_psa_at")),
        "psa_last_updated": _plain(row.get("psa_last_updated")),
        "category": row.get("category"),
        "psa_owned": {
            "locked": synced,
            "status": row.get("status"),
            "billing_cost": {
                "amount": _plain(row.get("billing_amount")),
                "currency": row.get("billing_currency"),
            },
            "billing_cycle": row.get("billing_cycle"),
        },
        "psa_seeded": {
            name: {
                "value": _plain(row.get(name)),
                "psa_value": _plain(row.get(f"psa_{name}")),
                "overridden": name in overrides,
            }
            for name in PSA_SEEDED
        },
        "local": {name: _plain(row.get(name)) for name in LOCAL},
        "updated_at": _plain(row.get("updated_at")),
    }
