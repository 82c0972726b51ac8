"""The mapping rules a snapshot's records share, and `MappingError` when one cannot apply.

Calendar dates, money rounding, billing cycle, currency, agreement status and category
(`agreement_context`), ids.

Pure: no I/O, no clock ("today" is the snapshot's `observed_at` in the tenant's time zone).

Rules worth a worked example:

  Status (highest wins): cancelled > expired > inactive > pending > active.
    agreementStatus "Active", endDate 2025-01-31, observed 2025-02-01 (tenant time) -> expired
    cancelledFlag true, agreementStatus "Expired"                                   -> cancelled
  An addition's status is the highest of: its own "cancelled" (cancelledDate <= today), its own
  "pending" (today < effectiveDate), and its agreement's status. So a future addition of an active
  agreement is pending, and any addition of a cancelled agreement is cancelled.

  Calendar dates: ConnectWise sends date-only values as midnight UTC (`2024-01-01T00:00:00Z`);
  those are taken as that calendar date. Any other instant is converted to the tenant's time zone
  first (`2023-12-31T23:00:00Z` in Europe/Berlin is 2024-01-01). A naive timestamp is UTC.

  Addition cost: Billable -> (quantity - lessIncluded) x unitPrice, where a quantity below
  lessIncluded bills 0 units (never a negative cost from an over-included line); DoNotBill and
  NoCharge -> 0. Missing numbers count as 0 and the explanation says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.fast import AdditionView, AgreementView, ObservedSnapshot
from schemas.psa_digest import AdditionDigests, agreement_digest
from schemas.records import (
    BillingCycle,
    Category,
    Status,
    contract_key,
)

ROUNDING: Final = ROUND_HALF_UP

# ConnectWise `billingOptions` names, compared case- and punctuation-insensitively.
_BILLING_CYCLES: Final[dict[str, BillingCycle]] = {
    "monthly": "monthly",
    "quarterly": "quarterly",
    "semiannual": "semi_annual",
    "yearly": "annual",
    "weekly": "weekly",
    "biweekly": "bi_weekly",
    "bimonthly": "bi_monthly",
    "notrecurring": "one_time",
}

# ISO 4217 minor units that are not 2 (everything else uses 2).
_ISO_DECIMALS: Final[dict[str, int]] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
_MAX_DECIMALS: Final = 6  # what the wire's decimal strings allow
_MAX_ABS_AMOUNT: Final = Decimal("1e15")
_CURRENCY_RE: Final = re.compile(r"^[A-Z]{3}$")
_NOT_LETTERS: Final = re.compile(r"[^a-z]")
_PRECEDENCE: Final[dict[Status, int]] = {
    "active": 0,
    "pending": 1,
    "inactive": 2,
    "expired": 3,
    "cancelled": 4,
}
ZERO: Final = Decimal(0)
_QUANTA: Final = {decimals: Decimal(1).scaleb(-decimals) for decimals in range(_MAX_DECIMALS + 1)}


class MappingError(Exception):
    """One item could not be mapped without guessing.

    `code` is a stable machine reason (e.g. `unknown_billing_cycle`), `kind`/`item_id` name the
    item, `message` is for humans and never contains credentials (only ConnectWise field values).
    """

    def __init__(self, code: str, message: str, *, kind: str, item_id: int) -> None:
        super().__init__(f"{kind} {item_id}: {message}")
        self.code = code
        self.message = message
        self.kind = kind
        self.item_id = item_id


@dataclass(frozen=True)
class AgreementContext:
    """What every record of one snapshot shares: computed once per agreement."""

    tenant_id: str
    client_id: str
    agreement_id: int
    key: str
    today: date
    zone: ZoneInfo
    currency: str
    currency_rule: str
    decimals: int
    cycle: BillingCycle
    cycle_rule: str
    status: Status
    status_rule: str
    end_date: date | None
    data: ObservedSnapshot
    category: Category = "recurring"
    category_rule: str = ""
    dates: dict[datetime, date | None] = field(default_factory=dict)
    """Calendar dates already computed for this snapshot (additions mostly share theirs)."""
    memo: dict[str, Any] = field(default_factory=dict)
    """Per-snapshot values computed on first use or handed in (the input digests)."""

    def agreement_digest(self) -> str:
        """`schemas.psa_digest.agreement_digest` of this snapshot."""
        digest = self.memo.get("agreement")
        if digest is None:
            digest = self.memo["agreement"] = agreement_digest(self.data)
        return str(digest)

    def addition_digest(self, addition: AdditionView) -> str:
        """`schemas.psa_digest.addition_digest` of one addition of this snapshot."""
        known = self.memo.get("by_id", {}).get(addition.id)
        if known is not None:
            return str(known)
        digests = self.memo.get("additions")
        if digests is None:
            digests = self.memo["additions"] = AdditionDigests(self.data)
        return str(digests(addition))

    def calendar_date(self, value: datetime | None) -> date | None:
        """`calendar_date(value, self.zone)`, memoised per snapshot."""
        if value is None:
            return None
        found = self.dates.get(value, _MISSING)
        if found is _MISSING:
            found = self.dates[value] = calendar_date(value, self.zone)
        result: date | None = found
        return result


_MISSING: Final[Any] = object()


# ---------------------------------------------------------------------------------------------
# Small rules


def calendar_date(value: datetime | None, zone: ZoneInfo) -> date | None:
    """The calendar date a ConnectWise timestamp stands for (midnight UTC = a date-only value)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    utc = value.astimezone(UTC)
    if utc.hour == 0 and utc.minute == 0 and utc.second == 0 and utc.microsecond == 0:
        return utc.date()
    return value.astimezone(zone).date()


def billing_cycle_of(name: str) -> BillingCycle | None:
    """`Monthly`, `semi-annual`, `Bi Weekly`... -> the record's cycle; None when unknown."""
    return _BILLING_CYCLES.get(_NOT_LETTERS.sub("", name.lower()))


def currency_decimals(code: str, number_of_decimals: int | None) -> int:
    """ConnectWise's `numberOfDecimals` when given, else the ISO 4217 minor unit."""
    if number_of_decimals is not None:
        return number_of_decimals
    return _ISO_DECIMALS.get(code, 2)


def round_money(amount: Decimal, decimals: int) -> Decimal:
    """ROUND_HALF_UP to `decimals` places; -0 becomes 0."""
    quantum = _QUANTA.get(decimals)
    if quantum is None:
        quantum = Decimal(1).scaleb(-decimals)
    rounded = amount.quantize(quantum, rounding=ROUNDING)
    return rounded if rounded != 0 else abs(rounded)


def clean_text(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    cleaned = text.replace("\x00", "").strip()
    return cleaned[:limit] if cleaned else None


def higher_status(a: Status, b: Status) -> Status:
    return a if _PRECEDENCE[a] >= _PRECEDENCE[b] else b


# ---------------------------------------------------------------------------------------------
# Agreement


def _zone(data: ObservedSnapshot) -> ZoneInfo:
    try:
        return ZoneInfo(data.time_zone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise MappingError(
            "invalid_time_zone",
            f"tenant time zone {data.time_zone!r} is not an IANA zone",
            kind="agreement",
            item_id=data.agreement.id,
        ) from error


def _currency(agreement: AgreementView, default: str) -> tuple[str, int, str]:
    cw = agreement.currency
    code = cw.currency_code if cw is not None and cw.currency_code else None
    rule = (
        f"agreement currency.currencyCode {code}"
        if code
        else f"no agreement currency: tenant default {default}"
    )
    code = (code or default).strip().upper()
    if not _CURRENCY_RE.match(code):
        raise MappingError(
            "invalid_currency",
            f"currency code {code!r} is not ISO 4217",
            kind="agreement",
            item_id=agreement.id,
        )
    given = cw.number_of_decimals if cw is not None else None
    decimals = currency_decimals(code, given)
    if not 0 <= decimals <= _MAX_DECIMALS:
        raise MappingError(
            "unsupported_currency_decimals",
            f"currency {code} has numberOfDecimals {decimals} (supported 0..{_MAX_DECIMALS})",
            kind="agreement",
            item_id=agreement.id,
        )
    source = "numberOfDecimals" if given is not None else "ISO 4217"
    return code, decimals, f"{rule}; {decimals} decimals ({source})"


def _cycle(agreement: AgreementView) -> tuple[BillingCycle, str]:
    name = agreement.billing_cycle.name if agreement.billing_cycle is not None else None
    if not name:
        if agreement.bill_one_time_flag:
            return "one_time", "no billingCycle, billOneTimeFlag true -> one_time"
        raise MappingError(
            "missing_billing_cycle", "agreement has no billingCycle", kind="agreement", item_id=agreement.id
        )
    cycle = billing_cycle_of(name)
    if cycle is None:
        raise MappingError(
            "unknown_billing_cycle",
            f"billingCycle {name!r} is not one of Weekly, BiWeekly, Monthly, BiMonthly, Quarterly, "
            "SemiAnnual, Yearly, NotRecurring",
            kind="agreement",
            item_id=agreement.id,
        )
    return cycle, f"billingCycle {name!r} -> {cycle}"


def _agreement_status(
    agreement: AgreementView, start: date | None, end: date | None, today: date
) -> tuple[Status, str]:
    raw = agreement.agreement_status
    if agreement.cancelled_flag:
        return "cancelled", "cancelledFlag true -> cancelled"
    if raw == "Cancelled":
        return "cancelled", "agreementStatus Cancelled -> cancelled"
    if raw == "Expired":
        return "expired", "agreementStatus Expired -> expired"
    if end is not None and not agreement.no_ending_date_flag and end < today:
        return "expired", f"endDate {end!s} before today {today!s} (noEndingDateFlag false) -> expired"
    if raw == "Inactive":
        return "inactive", "agreementStatus Inactive -> inactive"
    if start is not None and start > today:
        return "pending", f"startDate {start!s} after today {today!s} -> pending"
    return "active", f"agreementStatus {raw or 'absent'}, started by today {today!s}, not ended -> active"


def agreement_context(data: ObservedSnapshot) -> AgreementContext:
    """Compute the agreement-wide facts (today, currency, cycle, status); raises `MappingError`."""
    agreement = data.agreement
    check_id(agreement.id, "agreement", kind="agreement", item_id=agreement.id)
    parent = agreement.parent_agreement
    if parent is not None and parent.id is not None:
        check_id(parent.id, "parentAgreement", kind="agreement", item_id=agreement.id)
    zone = _zone(data)
    today = data.observed_at.astimezone(zone).date()
    currency, decimals, currency_rule = _currency(agreement, data.default_currency)
    cycle, cycle_rule = _cycle(agreement)
    start = calendar_date(agreement.start_date, zone)
    end = None if agreement.no_ending_date_flag else calendar_date(agreement.end_date, zone)
    status, status_rule = _agreement_status(agreement, start, end, today)
    category, category_rule = _category(cycle, agreement)
    return AgreementContext(
        tenant_id=data.tenant_id,
        client_id=data.client_id,
        agreement_id=agreement.id,
        key=contract_key(data.tenant_id, "agreement", agreement.id),
        today=today,
        zone=zone,
        currency=currency,
        currency_rule=currency_rule,
        decimals=decimals,
        cycle=cycle,
        cycle_rule=cycle_rule,
        status=status,
        status_rule=status_rule,
        end_date=end,
        data=data,
        category=category,
        category_rule=category_rule,
    )


def checked_money(amount: Decimal, ctx: AgreementContext, kind: str, item_id: int) -> Decimal:
    try:
        rounded = round_money(amount, ctx.decimals)
    except InvalidOperation as error:
        raise MappingError(
            "amount_out_of_range", f"amount {amount} cannot be represented", kind=kind, item_id=item_id
        ) from error
    if abs(rounded) >= _MAX_ABS_AMOUNT:
        raise MappingError(
            "amount_out_of_range", f"amount {rounded} is out of range", kind=kind, item_id=item_id
        )
    return rounded


def _category(cycle: BillingCycle, agreement: AgreementView) -> tuple[Category, str]:
    if cycle == "one_time":
        return "fixed_cost", "billing cycle one_time -> fixed_cost"
    if agreement.bill_one_time_flag:
        return "fixed_cost", "billOneTimeFlag true -> fixed_cost"
    return "recurring", f"billing cycle {cycle} -> recurring"


_MAX_ID: Final = 2_147_483_647


def check_id(value: int, what: str, *, kind: str, item_id: int) -> None:
    if not 1 <= value <= _MAX_ID:
        raise MappingError(
            "invalid_id", f"{what} id {value} is not a ConnectWise id", kind=kind, item_id=item_id
        )
