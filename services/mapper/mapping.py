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

The shared rules (dates, money, cycle, currency, status) are in `services.mapper.mapping_rules`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from schemas.fast import AdditionView, ObservedSnapshot
from schemas.records import (
    ContractRecordData,
    Status,
    contract_key,
)
from services.mapper.mapping_rules import (
    ROUNDING,
    ZERO,
    AgreementContext,
    MappingError,
    agreement_context,
    check_id,
    checked_money,
    clean_text,
    higher_status,
    round_money,
)

__all__ = [
    "FieldsResult",
    "MappingError",
    "MappingResult",
    "RecordFields",
    "addition_fields",
    "agreement_fields",
    "map_addition",
    "map_agreement",
    "map_items",
    "map_items_fields",
]


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
    amount = agreement.bill_amount if agreement.bill_amount is not None else ZERO
    cost = checked_money(amount, ctx, "agreement", agreement.id)
    category, category_rule = ctx.category, ctx.category_rule
    start = ctx.calendar_date(agreement.start_date)
    parent = agreement.parent_agreement
    parent_key = contract_key(data.tenant_id, "agreement", parent.id) if parent and parent.id else None
    name = clean_text(agreement.name, 300) or f"Agreement {agreement.id}"
    contract_type = clean_text(agreement.type.name if agreement.type else None, 200) or "Agreement"
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
        description=clean_text(agreement.invoice_description, 10_000),
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
        return round_money(ZERO, ctx.decimals), f"{bill} -> 0"
    quantity = addition.quantity if addition.quantity is not None else ZERO
    included = addition.less_included if addition.less_included is not None else ZERO
    price = addition.unit_price if addition.unit_price is not None else ZERO
    units = quantity - included
    billed_units = units if units > 0 else ZERO
    cost = checked_money(billed_units * price, ctx, "addition", addition.id)

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
        status = higher_status(status, "pending")
    if cancelled is not None and cancelled <= ctx.today:
        rules.append(f"cancelledDate {cancelled!s} reached by today {ctx.today!s} -> cancelled")
        status = higher_status(status, "cancelled")
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
    check_id(addition.id, "addition", kind="addition", item_id=addition.id)
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
        clean_text(addition.description, 300)
        or clean_text(product.identifier if product else None, 300)
        or clean_text(product.name if product else None, 300)
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
    description = clean_text(addition.invoice_description, 10_000) or clean_text(addition.description, 10_000)
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
