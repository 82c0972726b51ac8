"""docs/design.md#mapping-rules mapping rules, written again independently of `services.mapper` (pure).

The checker uses these to say what the contract store must hold for a ConnectWise snapshot. They
read ConnectWise JSON as plain dicts (as the simulator's API returns it) and never import the
mapper, so a bug in the mapper cannot hide itself by being reused here.

Where docs/design.md#mapping-rules is silent, the checker states the product's documented choice explicitly
(docs/chaos.md, "What the checker expects"): seeded texts (name, type, description), the status
precedence applied to additions too (cancelled > expired > inactive > pending > active), and
amounts rounded half-up to the currency's decimals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

CYCLES: dict[str, str] = {
    "Monthly": "monthly",
    "Quarterly": "quarterly",
    "SemiAnnual": "semi_annual",
    "Yearly": "annual",
    "Weekly": "weekly",
    "BiWeekly": "bi_weekly",
    "BiMonthly": "bi_monthly",
    "NotRecurring": "one_time",
}
RANK = {"active": 0, "pending": 1, "inactive": 2, "expired": 3, "cancelled": 4}
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "CLP", "ISK", "VND"})


@dataclass(frozen=True)
class Expected:
    """One contract the store must hold, with every value the checker compares."""

    contract_key: str
    client_id: str
    kind: str
    agreement_id: int
    addition_id: int | None
    parent_contract_key: str | None
    statuses: frozenset[str]
    """The acceptable status: one per possible "today" (a run that crosses midnight has two)."""
    amount: Decimal
    currency: str
    cycle: str
    category: str
    name: str
    contract_type: str
    start_date: date | None
    end_date: date | None
    description: str | None
    psa_last_updated: datetime
    retired: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    """Seeded fields edited locally: the effective value must be this, `psa_<field>` the PSA's."""
    local: dict[str, Any] = field(default_factory=dict)
    """Local fields set by edits (never written by a sync)."""


def parse_instant(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def calendar_day(text: str | None, zone: ZoneInfo) -> date | None:
    """A ConnectWise date: midnight UTC is a date-only value; other instants in the tenant's zone."""
    instant = parse_instant(text)
    if instant is None:
        return None
    utc = instant.astimezone(UTC)
    if (utc.hour, utc.minute, utc.second, utc.microsecond) == (0, 0, 0, 0):
        return utc.date()
    return instant.astimezone(zone).date()


def money(value: Any, currency: str, decimals: int | None) -> Decimal:
    """A JSON number as Decimal (via its text, never through float arithmetic), rounded half-up."""
    amount = Decimal(str(value)) if value is not None else Decimal(0)
    places = decimals if decimals is not None else (0 if currency in ZERO_DECIMAL_CURRENCIES else 2)
    rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return rounded if rounded != 0 else abs(rounded)


def clean(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    cleaned = text.replace("\x00", "").strip()
    return cleaned[:limit] if cleaned else None


def agreement_status(agreement: dict[str, Any], today: date, zone: ZoneInfo) -> str:
    """cancelled > expired > inactive > pending > active (docs/design.md#mapping-rules)."""
    raw = agreement.get("agreementStatus")
    if agreement.get("cancelledFlag") or raw == "Cancelled":
        return "cancelled"
    end = calendar_day(agreement.get("endDate"), zone)
    if raw == "Expired" or (end is not None and not agreement.get("noEndingDateFlag") and end < today):
        return "expired"
    if raw == "Inactive":
        return "inactive"
    start = calendar_day(agreement.get("startDate"), zone)
    if start is not None and start > today:
        return "pending"
    return "active"


def addition_status(addition: dict[str, Any], parent_status: str, today: date, zone: ZoneInfo) -> str:
    """Cancelled once `cancelledDate` is reached, pending before `effectiveDate`, else the agreement's;
    the highest by the status precedence when several hold."""
    status = parent_status
    effective = calendar_day(addition.get("effectiveDate"), zone)
    cancelled = calendar_day(addition.get("cancelledDate"), zone)
    if effective is not None and today < effective and RANK["pending"] > RANK[status]:
        status = "pending"
    if cancelled is not None and cancelled <= today:
        status = "cancelled"
    return status


def _currency(agreement: dict[str, Any], default: str) -> tuple[str, int | None]:
    cw = agreement.get("currency") or {}
    code = (cw.get("currencyCode") or default).strip().upper()
    return code, cw.get("numberOfDecimals")


def _cycle(agreement: dict[str, Any]) -> str:
    name = (agreement.get("billingCycle") or {}).get("name")
    if not name and agreement.get("billOneTimeFlag"):
        return "one_time"
    return CYCLES[str(name)]


def _version(agreement: dict[str, Any], additions: list[dict[str, Any]]) -> datetime:
    stamps = [parse_instant((item.get("_info") or {}).get("lastUpdated")) for item in [agreement, *additions]]
    present = [s for s in stamps if s is not None]
    if not present:
        raise ValueError(f"agreement {agreement.get('id')} has no _info.lastUpdated")
    return max(present)


def expected_records(
    tenant_id: str,
    agreement: dict[str, Any],
    additions: list[dict[str, Any]],
    *,
    todays: list[date],
    time_zone: str = "UTC",
    default_currency: str = "USD",
) -> list[Expected]:
    """The records of one agreement snapshot: the agreement's, then one per addition."""
    zone = ZoneInfo(time_zone)
    agreement_id = int(agreement["id"])
    key = f"cw:{tenant_id}:agreement:{agreement_id}"
    client_id = str((agreement.get("company") or {})["id"])
    currency, decimals = _currency(agreement, default_currency)
    cycle = _cycle(agreement)
    category = "fixed_cost" if cycle == "one_time" or agreement.get("billOneTimeFlag") else "recurring"
    version = _version(agreement, additions)
    no_end = bool(agreement.get("noEndingDateFlag"))
    end = None if no_end else calendar_day(agreement.get("endDate"), zone)
    parent = (agreement.get("parentAgreement") or {}).get("id")
    statuses = {today: agreement_status(agreement, today, zone) for today in todays}
    records = [
        Expected(
            contract_key=key,
            client_id=client_id,
            kind="agreement",
            agreement_id=agreement_id,
            addition_id=None,
            parent_contract_key=f"cw:{tenant_id}:agreement:{parent}" if parent else None,
            statuses=frozenset(statuses.values()),
            amount=money(agreement.get("billAmount"), currency, decimals),
            currency=currency,
            cycle=cycle,
            category=category,
            name=clean(agreement.get("name"), 300) or f"Agreement {agreement_id}",
            contract_type=clean((agreement.get("type") or {}).get("name"), 200) or "Agreement",
            start_date=calendar_day(agreement.get("startDate"), zone),
            end_date=end,
            description=clean(agreement.get("invoiceDescription"), 10_000),
            psa_last_updated=version,
        )
    ]
    for addition in additions:
        addition_id = int(addition["id"])
        if addition.get("billCustomer") == "Billable":
            units = Decimal(str(addition.get("quantity") or 0)) - Decimal(
                str(addition.get("lessIncluded") or 0)
            )
            raw = max(units, Decimal(0)) * Decimal(str(addition.get("unitPrice") or 0))
        else:
            raw = Decimal(0)
        product = addition.get("product") or {}
        own_end = calendar_day(addition.get("cancelledDate"), zone)
        records.append(
            Expected(
                contract_key=f"cw:{tenant_id}:addition:{addition_id}",
                client_id=client_id,
                kind="addition",
                agreement_id=agreement_id,
                addition_id=addition_id,
                parent_contract_key=key,
                statuses=frozenset(addition_status(addition, statuses[t], t, zone) for t in todays),
                amount=money(raw, currency, decimals),
                currency=currency,
                cycle=cycle,
                category=category,
                name=clean(addition.get("description"), 300)
                or clean(product.get("identifier"), 300)
                or clean(product.get("name"), 300)
                or f"Addition {addition_id}",
                contract_type="Agreement addition",
                start_date=calendar_day(addition.get("effectiveDate"), zone),
                end_date=own_end or end,
                description=clean(addition.get("invoiceDescription"), 10_000)
                or clean(addition.get("description"), 10_000),
                psa_last_updated=version,
            )
        )
    return records
