"""Read-model rows -> API documents (pure): the catalog dialog and contracts with field ownership."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from schemas.ownership import LOCAL, PSA_OWNED, PSA_SEEDED
from services.gateway.catalog_diff import field_changes

STATES = ("new", "updated", "synced", "removed")
DEFAULT_STATES = ("new", "updated")
"""The dialog lists new and updated items unless asked for others (as the imitated product)."""


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def count_states(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return counts


def client_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """A client of `GET /v1/clients` (and the console's clients page) from its read-model row."""
    return {
        "client_id": row["client_id"],
        "catalog": {state: int((row["catalog"] or {}).get(state, 0)) for state in STATES},
        "contracts": int(row["contracts"]),
        "auto_sync": bool(row["auto_sync"]),
        "last_synced_at": row["last_synced_at"],
        "last_status": row["last_status"],
        "last_error": row["last_error"],
    }


def _item(row: Mapping[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "contract_key": row["contract_key"],
        "state": row["state"],
        "name": row["name"],
        "psa_last_updated": plain(row["psa_last_updated"]),
        "removed_at": plain(row["removed_at"]),
        "summary": dict(row["summary"] or {}),
        "changes": None,
    }
    if row["state"] == "updated":
        item["changes"] = field_changes(row["kind"], row["name"], item["summary"], row)
    return item


def catalog_view(rows: Iterable[Mapping[str, Any]], states: Collection[str]) -> list[dict[str, Any]]:
    """Agreements in id order with their additions nested; only items in `states` are listed, and an
    agreement is listed when it or one of its listed additions is (its own `state` says which)."""
    agreements: dict[int, dict[str, Any]] = {}
    wanted: set[int] = set()
    for row in rows:
        agreement_id = int(row["agreement_id"])
        entry = agreements.setdefault(
            agreement_id,
            {
                "agreement_id": agreement_id,
                "contract_key": None,
                "state": None,
                "name": None,
                "psa_last_updated": None,
                "removed_at": None,
                "summary": {},
                "changes": None,
                "additions": [],
            },
        )
        if row["state"] in states:
            wanted.add(agreement_id)
        if row["kind"] == "agreement":
            entry.update(_item(row))
        elif row["state"] in states:
            entry["additions"].append({"addition_id": int(row["addition_id"]), **_item(row)})
    return [agreements[k] for k in sorted(wanted)]


def ownership() -> dict[str, str]:
    classes = {f: "psa_owned" for f in PSA_OWNED}
    classes.update({f: "psa_seeded" for f in PSA_SEEDED})
    classes.update({f: "local" for f in LOCAL})
    return classes


_OWNERSHIP = ownership()


def contract_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """One contract grouped by ownership: PSA-owned (locked while PSA-synced), PSA-seeded (effective
    value, PSA value, whether overridden locally) and local fields, with the mapping explanation."""
    overrides = row.get("local_overrides") or {}
    synced = bool(row.get("psa_synced"))
    return {
        "contract_key": row["contract_key"],
        "client_id": row["client_id"],
        "kind": row.get("kind"),
        "parent_contract_key": row.get("parent_contract_key"),
        "psa_synced": synced,
        "removed_in_psa_at": plain(row.get("removed_in_psa_at")),
        "psa_last_updated": plain(row.get("psa_last_updated")),
        "category": row.get("category"),
        "psa_owned": {
            "locked": synced,
            "status": row.get("status"),
            "billing_cost": {
                "amount": plain(row.get("billing_amount")),
                "currency": row.get("billing_currency"),
            },
            "billing_cycle": row.get("billing_cycle"),
        },
        "psa_seeded": {
            name: {
                "value": plain(row.get(name)),
                "psa_value": plain(row.get(f"psa_{name}")),
                "overridden": name in overrides,
            }
            for name in PSA_SEEDED
        },
        "local": {name: plain(row.get(name)) for name in LOCAL},
        "explanation": dict(row.get("explanation") or {}),
        "ownership": _OWNERSHIP,
        "updated_at": plain(row.get("updated_at")),
    }
