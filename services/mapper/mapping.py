"""ConnectWise agreement snapshots -> contract records (docs/mapper.md). Pure: no I/O, no clock.

Contract:
- Deterministic: the same `psa.agreement.observed` data always maps to the same records.
  "Today" is the event's `observed_at` date in the tenant's time zone (`time_zone`), never the
  wall clock, so a replay months later produces the same output.
- Total over valid input: anything that cannot be mapped without guessing raises exactly one
  `MappingError` with a machine reason code (`MappingError.code`) naming the item; nothing else
  escapes for input that passed schema validation.
- Money is `Decimal`, rounded ROUND_HALF_UP (commercial rounding, as invoices round) to the
  currency's decimals: `currency.numberOfDecimals` when ConnectWise gives it, else the ISO 4217
  minor unit (JPY 0, BHD/KWD/... 3, most 2). Amounts are never added across currencies.
- Every record carries `explanation`: per field, the rule and the inputs that produced its value.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from schemas.fast import AdditionView, AgreementView, ObservedSnapshot
from schemas.psa_digest import AdditionDigests, agreement_digest
from schemas.records import (
    BillingCycle,
    Category,
    ContractRecordData,
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
_ZERO: Final = Decimal(0)
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


def _clean(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    cleaned = text.replace("\x00", "").strip()
    return cleaned[:limit] if cleaned else None


def _higher(a: Status, b: Status) -> Status:
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
    _check_id(agreement.id, "agreement", kind="agreement", item_id=agreement.id)
    parent = agreement.parent_agreement
    if parent is not None and parent.id is not None:
        _check_id(parent.id, "parentAgreement", kind="agreement", item_id=agreement.id)
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


def _money(amount: Decimal, ctx: AgreementContext, kind: str, item_id: int) -> Decimal:
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


def _check_id(value: int, what: str, *, kind: str, item_id: int) -> None:
    if not 1 <= value <= _MAX_ID:
        raise MappingError(
            "invalid_id", f"{what} id {value} is not a ConnectWise id", kind=kind, item_id=item_id
        )


RecordFields = dict[str, Any]
"""A contract record's `data` as plain values, in the wire's field order, absent fields omitted
(never None): Decimal amount, `date` dates, UTC `datetime` version. `ContractRecordData` validates
it into the model (`_build`); `schemas.fast.encode_mapped` encodes it straight to JSON (hot path)."""


def _optional(fields: RecordFields, **values: Any) -> RecordFields:
    for name, value in values.items():
        if value is not None:
            fields[name] = value
    return fields


def _build(fields: RecordFields) -> ContractRecordData:
    """Validate the record (strict on produce) in one pydantic call, nested parts included.

    Its constraints hold by construction (ids checked, texts cleaned and cut, amounts range-
    checked, enums from this module), so a failure here is a bug, reported as `invalid_record`.
    One `model_validate` over plain dicts is measured faster than `model_construct` of the
    three models.
    """
    try:
        return ContractRecordData.model_validate(fields)
    except ValidationError as error:  # pragma: no cover - see above
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
        source = fields["source"]
        raise MappingError(
            "invalid_record",
            problems,
            kind=str(source["kind"]),
            item_id=int(source.get("addition_id") or source["agreement_id"]),
        ) from error


def map_agreement(data: ObservedSnapshot, ctx: AgreementContext | None = None) -> ContractRecordData:
    """The agreement's own contract record; raises `MappingError`."""
    return _build(agreement_fields(data, ctx or agreement_context(data)))


def agreement_fields(data: ObservedSnapshot, ctx: AgreementContext) -> RecordFields:
    """`map_agreement` as plain `RecordFields` (not validated); raises `MappingError`."""
    agreement = data.agreement
    amount = agreement.bill_amount if agreement.bill_amount is not None else _ZERO
    cost = _money(amount, ctx, "agreement", agreement.id)
    category, category_rule = ctx.category, ctx.category_rule
    start = ctx.calendar_date(agreement.start_date)
    parent = agreement.parent_agreement
    parent_key = contract_key(data.tenant_id, "agreement", parent.id) if parent and parent.id else None
    name = _clean(agreement.name, 300) or f"Agreement {agreement.id}"
    contract_type = _clean(agreement.type.name if agreement.type else None, 200) or "Agreement"
    explanation = {
        "contract_key": f"agreement id {agreement.id} -> {ctx.key}",
        "name": "agreement name" if name == agreement.name else f"agreement name (cleaned) -> {name!r}",
        "contract_type": f"agreement type {contract_type!r}",
        "category": category_rule,
        "status": ctx.status_rule,
        "billing_cost": f"billAmount {'absent -> 0' if agreement.bill_amount is None else str(amount)} "
        f"= {cost!s} {ctx.currency} ({ctx.currency_rule}; {ROUNDING})",
        "billing_cycle": ctx.cycle_rule,
        "start_date": f"startDate -> {start!s} (tenant calendar date, {ctx.zone.key})"
        if start
        else "no startDate",
        "end_date": "noEndingDateFlag true -> open-ended"
        if agreement.no_ending_date_flag
        else (f"endDate -> {ctx.end_date!s}" if ctx.end_date else "no endDate"),
        "description": "agreement invoiceDescription",
    }
    if parent_key:
        explanation["parent_contract_key"] = f"child of parentAgreement {parent.id if parent else ''}"
    fields: RecordFields = {
        "tenant_id": data.tenant_id,
        "client_id": data.client_id,
        "contract_key": ctx.key,
        "source": {
            "psa": "connectwise",
            "kind": "agreement",
            "agreement_id": agreement.id,
            "psa_last_updated": data.psa_last_updated,
            "psa_digest": ctx.agreement_digest(),
        },
    }
    _optional(fields, parent_contract_key=parent_key)
    fields["name"] = name
    fields["contract_type"] = contract_type
    fields["category"] = category
    fields["status"] = ctx.status
    fields["billing_cost"] = {"amount": cost, "currency": ctx.currency}
    fields["billing_cycle"] = ctx.cycle
    _optional(
        fields,
        start_date=start,
        end_date=ctx.end_date,
        description=_clean(agreement.invoice_description, 10_000),
    )
    fields["explanation"] = explanation
    return fields


# ---------------------------------------------------------------------------------------------
# Addition


def _addition_cost(addition: AdditionView, ctx: AgreementContext) -> tuple[Decimal, str]:
    bill = addition.bill_customer
    if bill is None:
        raise MappingError(
            "missing_bill_customer", "addition has no billCustomer", kind="addition", item_id=addition.id
        )
    if bill != "Billable":
        return round_money(_ZERO, ctx.decimals), f"{bill} -> 0"
    quantity = addition.quantity if addition.quantity is not None else _ZERO
    included = addition.less_included if addition.less_included is not None else _ZERO
    price = addition.unit_price if addition.unit_price is not None else _ZERO
    units = quantity - included
    billed_units = units if units > 0 else _ZERO
    cost = _money(billed_units * price, ctx, "addition", addition.id)

    q = "absent->0" if addition.quantity is None else quantity
    li = "absent->0" if addition.less_included is None else included
    up = "absent->0" if addition.unit_price is None else price
    rule = f"Billable: (quantity {q!s} − lessIncluded {li!s}) × unitPrice {up!s} = {cost!s} {ctx.currency}"  # noqa: RUF001
    if units < 0:
        rule += " (quantity below lessIncluded bills 0 units)"
    return cost, f"{rule} ({ctx.currency_rule}; {ROUNDING})"


def _addition_status(
    ctx: AgreementContext, effective: date | None, cancelled: date | None
) -> tuple[Status, str]:
    status: Status = ctx.status
    rules = [f"agreement status {ctx.status} ({ctx.status_rule})"]
    if effective is not None and ctx.today < effective:
        rules.append(f"effectiveDate {effective!s} after today {ctx.today!s} -> pending")
        status = _higher(status, "pending")
    if cancelled is not None and cancelled <= ctx.today:
        rules.append(f"cancelledDate {cancelled!s} reached by today {ctx.today!s} -> cancelled")
        status = _higher(status, "cancelled")
    return status, "; ".join(rules) + f"; highest wins -> {status}"


def map_addition(
    data: ObservedSnapshot, addition: AdditionView, ctx: AgreementContext | None = None
) -> ContractRecordData:
    """One addition's contract record (parent = its agreement's key); raises `MappingError`."""
    return _build(addition_fields(data, addition, ctx))


def addition_fields(
    data: ObservedSnapshot, addition: AdditionView, ctx: AgreementContext | None = None
) -> RecordFields:
    """`map_addition` as plain `RecordFields` (not validated); raises `MappingError`."""
    _check_id(addition.id, "addition", kind="addition", item_id=addition.id)
    if addition.agreement_id is not None and addition.agreement_id != data.agreement.id:
        raise MappingError(
            "addition_agreement_mismatch",
            f"addition names agreementId {addition.agreement_id}, snapshot is agreement {data.agreement.id}",
            kind="addition",
            item_id=addition.id,
        )
    try:
        ctx = ctx or agreement_context(data)
    except MappingError as error:
        raise MappingError(
            error.code,
            f"its agreement {data.agreement.id} is unmappable: {error.message}",
            kind="addition",
            item_id=addition.id,
        ) from error
    cost, cost_rule = _addition_cost(addition, ctx)
    start = ctx.calendar_date(addition.effective_date)
    own_end = ctx.calendar_date(addition.cancelled_date)
    status, status_rule = _addition_status(ctx, start, own_end)
    key = contract_key(data.tenant_id, "addition", addition.id)
    product = addition.product
    name = (
        _clean(addition.description, 300)
        or _clean(product.identifier if product else None, 300)
        or _clean(product.name if product else None, 300)
        or f"Addition {addition.id}"
    )
    end = own_end or ctx.end_date
    explanation = {
        "contract_key": f"addition id {addition.id} -> {key}",
        "parent_contract_key": f"its agreement {data.agreement.id} -> {ctx.key}",
        "name": "addition description, else product identifier",
        "contract_type": "agreement addition",
        "category": f"agreement's: {ctx.category_rule}",
        "status": status_rule,
        "billing_cost": cost_rule,
        "billing_cycle": f"agreement's: {ctx.cycle_rule}",
        "start_date": f"effectiveDate -> {start!s}" if start else "no effectiveDate",
        "end_date": f"cancelledDate -> {own_end!s}"
        if own_end
        else (
            f"no cancelledDate: agreement end {ctx.end_date!s}"
            if ctx.end_date
            else "no cancelledDate, agreement open-ended"
        ),
        "description": "addition invoiceDescription, else description",
    }
    fields: RecordFields = {
        "tenant_id": data.tenant_id,
        "client_id": data.client_id,
        "contract_key": key,
        "source": {
            "psa": "connectwise",
            "kind": "addition",
            "agreement_id": data.agreement.id,
            "addition_id": addition.id,
            "psa_last_updated": data.psa_last_updated,
            "psa_digest": ctx.addition_digest(addition),
        },
        "parent_contract_key": ctx.key,
        "name": name,
        "contract_type": "Agreement addition",
        "category": ctx.category,
        "status": status,
        "billing_cost": {"amount": cost, "currency": ctx.currency},
        "billing_cycle": ctx.cycle,
    }
    if start is not None:
        fields["start_date"] = start
    if end is not None:
        fields["end_date"] = end
    description = _clean(addition.invoice_description, 10_000) or _clean(addition.description, 10_000)
    if description is not None:
        fields["description"] = description
    fields["explanation"] = explanation
    return fields


MappingResult = ContractRecordData | MappingError
FieldsResult = RecordFields | MappingError


def map_items(data: ObservedSnapshot, *, agreement: bool, addition_ids: Iterable[int]) -> list[MappingResult]:
    """Map the agreement (when `agreement`) and the named additions; one result per item, in order.

    A failure of one item is returned as its `MappingError`, so the other items still map.
    An addition id the snapshot does not contain yields `MappingError("addition_not_in_snapshot")`.
    """
    results: list[MappingResult] = []
    for result in map_items_fields(data, agreement=agreement, addition_ids=addition_ids):
        if isinstance(result, MappingError):
            results.append(result)
            continue
        try:
            results.append(_build(result))
        except MappingError as error:  # pragma: no cover - a bug, see _build
            results.append(error)
    return results


def map_items_fields(
    data: ObservedSnapshot,
    *,
    agreement: bool,
    addition_ids: Iterable[int],
    digests: tuple[str, Mapping[int, str]] | None = None,
) -> list[FieldsResult]:
    """`map_items` returning unvalidated `RecordFields` (the same rules, no pydantic per record).

    For the hot path: `schemas.fast.encode_mapped` encodes them; a property test asserts that those
    bytes parse into exactly the record `map_items` builds. `digests`: the snapshot's input digests
    (agreement, additions by id) when the caller has them already (`schemas.psa_digest`, not checked).
    """
    results: list[FieldsResult] = []
    ctx: AgreementContext | None = None
    try:
        ctx = agreement_context(data)
        if digests is not None:
            ctx.memo["agreement"], ctx.memo["by_id"] = digests
    except MappingError as error:
        if agreement:
            results.append(error)
    else:
        if agreement:
            try:
                results.append(agreement_fields(data, ctx))
            except MappingError as error:
                results.append(error)
    by_id = {a.id: a for a in data.additions}
    for addition_id in addition_ids:
        addition = by_id.get(addition_id)
        if addition is None:
            results.append(
                MappingError(
                    "addition_not_in_snapshot",
                    f"agreement {data.agreement.id}'s snapshot has no addition {addition_id}",
                    kind="addition",
                    item_id=addition_id,
                )
            )
            continue
        try:
            results.append(addition_fields(data, addition, ctx))
        except MappingError as error:
            results.append(error)
    return results
