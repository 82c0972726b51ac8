"""The field-level difference between a catalog item's PSA values and its contract (pure).

For an `updated` catalog item the Sync-from-PSA dialog shows what a sync would change. The catalog
holds the PSA's current values (the item's `summary`, as ConnectWise sent them); the contract holds
the PSA values of its last sync (`psa_*` columns for the seeded fields, the PSA-owned columns). This
module compares the fields whose PSA value translates to the contract's without the mapper's
context: name, start and end dates (ConnectWise sends calendar dates as midnight UTC), billing cost
and currency, billing cycle, and cancellation. Date-derived states (an active agreement past its end
date is `expired`) and the tenant's time zone for non-midnight timestamps stay the mapper's: the sync
itself is the authority, this list is a preview. Deterministic; never raises on odd input (a value
that cannot be read is compared as text).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

_CYCLES = {
    "monthly": "monthly",
    "quarterly": "quarterly",
    "semiannual": "semi_annual",
    "yearly": "annual",
    "weekly": "weekly",
    "biweekly": "bi_weekly",
    "bimonthly": "bi_monthly",
    "notrecurring": "one_time",
}

_DATE_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2})")
_NOT_A_TO_Z = re.compile(r"[^a-z]")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _calendar_date(value: Any) -> str | None:
    """`2024-01-01T00:00:00Z` -> `2024-01-01`; other strings as given."""
    text = _text(value)
    if text is None:
        return None
    match = _DATE_PREFIX.match(text)
    return match.group(1) if match else text


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _money_text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _cycle(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    key = _NOT_A_TO_Z.sub("", text.lower())
    return _CYCLES.get(key, text)


def _addition_cost(summary: Mapping[str, Any]) -> Decimal | None:
    bill = summary.get("bill_customer")
    if bill is None:
        return None
    if bill != "Billable":
        return Decimal(0)
    quantity = _decimal(summary.get("quantity")) or Decimal(0)
    included = _decimal(summary.get("less_included")) or Decimal(0)
    price = _decimal(summary.get("unit_price")) or Decimal(0)
    units = quantity - included
    return (units if units > 0 else Decimal(0)) * price


def _change(field: str, contract_value: Any, psa_value: Any) -> dict[str, Any]:
    return {"field": field, "contract_value": contract_value, "psa_value": psa_value}


def _cost_differs(contract_amount: Any, psa_amount: Decimal | None) -> bool:
    stored = _decimal(contract_amount)
    if stored is None or psa_amount is None:
        return stored != psa_amount
    # the mapper rounds to the currency's minor unit: compare at the contract's scale
    exponent = stored.as_tuple().exponent
    scale = Decimal(1).scaleb(exponent if isinstance(exponent, int) else -2)
    return stored != psa_amount.quantize(scale)


def field_changes(
    kind: str, name: str | None, summary: Mapping[str, Any], contract: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """What a sync would change on `contract` (a row with the contract's columns) for a catalog
    item of `kind` (`agreement` / `addition`) with this `name` and `summary`, in field order."""
    changes: list[dict[str, Any]] = []
    if name is not None and name.strip() != (contract.get("psa_name") or ""):
        changes.append(_change("name", contract.get("psa_name"), name.strip()))
    if kind == "agreement":
        psa_start, psa_end = (
            _calendar_date(summary.get("start_date")),
            _calendar_date(summary.get("end_date")),
        )
        cost = _decimal(summary.get("bill_amount"))
    else:
        psa_start, psa_end = _calendar_date(summary.get("effective_date")), None
        cost = _addition_cost(summary)
    if psa_start != _calendar_date(contract.get("psa_start_date")):
        changes.append(_change("start_date", _calendar_date(contract.get("psa_start_date")), psa_start))
    if (
        kind == "agreement"
        and psa_end is not None
        and psa_end != _calendar_date(contract.get("psa_end_date"))
    ):
        changes.append(_change("end_date", _calendar_date(contract.get("psa_end_date")), psa_end))
    if kind == "addition":
        cancelled = _calendar_date(summary.get("cancelled_date"))
        if cancelled is not None and cancelled != _calendar_date(contract.get("psa_end_date")):
            changes.append(_change("end_date", _calendar_date(contract.get("psa_end_date")), cancelled))
    if cost is not None and _cost_differs(contract.get("billing_amount"), cost):
        changes.append(
            _change("billing_cost.amount", _money_text(_decimal(contract.get("billing_amount"))), str(cost))
        )
    currency = summary.get("currency")
    if kind == "agreement" and currency is not None and currency != contract.get("billing_currency"):
        changes.append(_change("billing_cost.currency", contract.get("billing_currency"), currency))
    cycle = _cycle(summary.get("billing_cycle"))
    if kind == "agreement" and cycle is not None and cycle != contract.get("billing_cycle"):
        changes.append(_change("billing_cycle", contract.get("billing_cycle"), cycle))
    if kind == "agreement" and summary.get("cancelled") is True and contract.get("status") != "cancelled":
        changes.append(_change("status", contract.get("status"), "cancelled"))
    return changes
