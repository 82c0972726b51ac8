"""The writer's rules as pure functions (no Kafka, no SQL): what a batch of messages does.

Everything here is deterministic and side-effect free; `store.py` executes the resulting plan
in one PostgreSQL transaction and `consumer.py` moves bytes. The ownership rules come from
`schemas.ownership` only:

- PSA-owned fields (`PSA_OWNED_COLUMNS`) are always written by a sync and never by a local edit
  of a PSA-synced contract.
- PSA-seeded fields are written by a sync unless the contract has a local override for them;
  a local edit of one becomes a visible override (`local_overrides`), and the PSA's value stays
  visible in `psa_<field>`.
- Local fields are never written by a sync.
- A record whose `psa_last_updated` is older than the stored one changes nothing; one with the same
  version changes the contract when its content differs (two changes within ConnectWise's
  one-second `lastUpdated`), the later record winning.

`merge_contract` is the reference implementation of the upsert that `store.py` runs as one
set-based statement; the integration tests check that the database agrees with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, NamedTuple, get_args
from uuid import UUID

import orjson

from schemas.fast import MappedRecord, ObservedMessage
from schemas.ownership import LOCAL, PSA_OWNED, PSA_OWNED_COLUMNS, PSA_SEEDED, field_class, split_edit
from schemas.psa import AdditionRemoved, AgreementRemoved
from schemas.psa_digest import AdditionDigests, agreement_digest
from schemas.records import BillingCycle, ContractRecordMapped, ContractRecordRetired, Status

# ---------------------------------------------------------------------------------------------
# Contract rows and the upsert rule
# ---------------------------------------------------------------------------------------------

SOURCE_COLUMNS: tuple[str, ...] = (
    "client_id",
    "psa",
    "kind",
    "agreement_id",
    "addition_id",
    "psa_last_updated",
    "parent_contract_key",
    "psa_digest",
)
"""Columns describing where a synced contract comes from; written by every applied sync."""

MAPPING_COLUMNS: tuple[str, ...] = ("category", "explanation")
"""Mapping outputs that are neither owned nor seeded but always follow the PSA."""

SEEDED_PSA_COLUMNS: tuple[str, ...] = tuple(f"psa_{name}" for name in PSA_SEEDED)
"""The PSA's latest value of each seeded field (`psa_name`, ...), always written by a sync."""

SYNC_COMPARED_COLUMNS: tuple[str, ...] = (
    *SOURCE_COLUMNS,
    *PSA_OWNED_COLUMNS,
    *SEEDED_PSA_COLUMNS,
    *MAPPING_COLUMNS,
)
"""What a sync writes; a record equal to the stored row on all of these changes nothing."""

STAGE_COLUMNS: tuple[str, ...] = (
    "contract_key",
    "tenant_id",
    *SOURCE_COLUMNS,
    *PSA_OWNED_COLUMNS,
    *PSA_SEEDED,
    *MAPPING_COLUMNS,
    "event_id",
)
"""Columns of one staged contract record, in COPY order (seeded fields carry the PSA's value)."""


@dataclass(frozen=True)
class ContractRow:
    """One contract record, flattened to the columns a sync writes."""

    contract_key: str
    tenant_id: str
    client_id: str
    psa: str
    kind: str
    agreement_id: int
    addition_id: int | None
    psa_last_updated: datetime
    parent_contract_key: str | None
    status: str
    billing_amount: Decimal
    billing_currency: str
    billing_cycle: str
    name: str
    contract_type: str
    start_date: date | None
    end_date: date | None
    description: str | None
    category: str
    explanation: dict[str, str]
    event_id: UUID
    correlation_id: str | None = None
    psa_digest: str | None = None

    def stage_tuple(self) -> tuple[Any, ...]:
        """The row in `STAGE_COLUMNS` order (explanation left as a dict for the caller to encode)."""
        return tuple(getattr(self, name) for name in STAGE_COLUMNS)


def contract_row(event: ContractRecordMapped) -> ContractRow:
    data = event.data
    return ContractRow(
        contract_key=data.contract_key,
        tenant_id=data.tenant_id,
        client_id=data.client_id,
        psa=data.source.psa,
        kind=data.source.kind,
        agreement_id=data.source.agreement_id,
        addition_id=data.source.addition_id,
        psa_last_updated=data.source.psa_last_updated,
        parent_contract_key=data.parent_contract_key,
        status=data.status,
        billing_amount=data.billing_cost.amount,
        billing_currency=data.billing_cost.currency,
        billing_cycle=data.billing_cycle,
        name=data.name,
        contract_type=data.contract_type,
        start_date=data.start_date,
        end_date=data.end_date,
        description=data.description,
        category=data.category,
        explanation=dict(data.explanation),
        event_id=event.id,
        correlation_id=event.correlationid,
        psa_digest=data.source.psa_digest,
    )


MAPPED_TYPE = "contract.record.mapped"


class StagedRecord(NamedTuple):
    """A validated `contract.record.mapped`, reduced to what the writer stores and counts (one
    tuple per record instead of five pydantic models; built by `staged_from_record` or,
    for a record pydantic validated, by `staged_from_event`).

    `values` are the stage columns in `STAGE_COLUMNS` order (`explanation` as JSON text, the event
    id last)."""

    id: UUID
    correlationid: str | None
    tenant_id: str
    client_id: str
    contract_key: str
    psa_last_updated: datetime
    values: tuple[Any, ...]

    @property
    def type(self) -> str:
        return MAPPED_TYPE


def staged_from_record(record: MappedRecord) -> StagedRecord:
    """The staged form of a record decoded by the compiled codec (`schemas.fast.decode_mapped`)."""
    data = record.data
    source = data.source
    money = data.billing_cost
    explanation = data.explanation
    values = (
        data.contract_key,
        data.tenant_id,
        data.client_id,
        "connectwise",
        source.kind,
        source.agreement_id,
        source.addition_id,
        record.psa_last_updated,
        data.parent_contract_key,
        source.psa_digest,
        data.status,
        record.amount,
        money.currency,
        data.billing_cycle,
        data.name,
        data.contract_type,
        record.start_date,
        record.end_date,
        data.description,
        data.category,
        orjson.dumps(explanation).decode() if explanation else "{}",
        record.id,
    )
    return StagedRecord(
        record.id,
        record.correlationid,
        data.tenant_id,
        data.client_id,
        data.contract_key,
        record.psa_last_updated,
        values,
    )


def staged_from_event(event: ContractRecordMapped) -> StagedRecord:
    """The staged form of a record validated by pydantic."""
    data = event.data
    return StagedRecord(
        event.id,
        event.correlationid,
        data.tenant_id,
        data.client_id,
        data.contract_key,
        data.source.psa_last_updated,
        stage_values(event, orjson.dumps(data.explanation).decode()),
    )


def stage_values(event: ContractRecordMapped, explanation_json: str) -> tuple[Any, ...]:
    """The record's values in `STAGE_COLUMNS` order (the event id last), without building a row object."""
    data = event.data
    source = data.source
    return (
        data.contract_key,
        data.tenant_id,
        data.client_id,
        source.psa,
        source.kind,
        source.agreement_id,
        source.addition_id,
        source.psa_last_updated,
        data.parent_contract_key,
        source.psa_digest,
        data.status,
        data.billing_cost.amount,
        data.billing_cost.currency,
        data.billing_cycle,
        data.name,
        data.contract_type,
        data.start_date,
        data.end_date,
        data.description,
        data.category,
        explanation_json,
        event.id,
    )


@dataclass(frozen=True)
class StoredContract:
    """The parts of a stored contract the sync and edit rules look at (a plain value)."""

    contract_key: str
    tenant_id: str
    client_id: str
    psa_synced: bool
    psa_last_updated: datetime | None
    values: Mapping[str, Any]
    """Every column by name (effective seeded values, `psa_<field>`, PSA-owned, local, ...)."""
    local_overrides: Mapping[str, Any] = field(default_factory=dict)
    removed_in_psa_at: datetime | None = None


UpsertOutcome = Literal["created", "updated", "unchanged"]


def merge_contract(stored: StoredContract | None, row: ContractRow) -> tuple[UpsertOutcome, dict[str, Any]]:
    """The upsert rule: the outcome and the resulting column values (reference for `store.py`).

    - no stored contract: created, with the PSA values as effective seeded values;
    - another tenant's contract under the same key, or an older `psa_last_updated`: unchanged;
    - equal on every synced column (`SYNC_COMPARED_COLUMNS`) and not retired: unchanged;
    - otherwise updated: source, PSA-owned, `psa_<seeded>` and mapping columns from the record;
      effective seeded columns from the record unless overridden locally; local columns kept;
      a retired contract comes back only with a strictly newer PSA version.
    """
    incoming = {name: getattr(row, name) for name in (*SOURCE_COLUMNS, *PSA_OWNED_COLUMNS, *MAPPING_COLUMNS)}
    incoming.update({f"psa_{name}": getattr(row, name) for name in PSA_SEEDED})
    if stored is None:
        values = {"contract_key": row.contract_key, "tenant_id": row.tenant_id, **incoming}
        values.update({name: getattr(row, name) for name in PSA_SEEDED})
        values.update(psa_synced=True, local_overrides={}, removed_in_psa_at=None)
        return "created", values
    current = dict(stored.values)
    if stored.tenant_id != row.tenant_id:
        return "unchanged", current
    if stored.psa_last_updated is not None and row.psa_last_updated < stored.psa_last_updated:
        return "unchanged", current
    newer = stored.psa_last_updated is None or row.psa_last_updated > stored.psa_last_updated
    revive = stored.removed_in_psa_at is not None and newer
    same = all(current.get(name) == value for name, value in incoming.items())
    if same and stored.psa_synced and not revive:
        return "unchanged", current
    values = {**current, **incoming}
    for name in PSA_SEEDED:
        values[name] = current.get(name) if name in stored.local_overrides else getattr(row, name)
    values["psa_synced"] = True
    values["removed_in_psa_at"] = None if revive else stored.removed_in_psa_at
    return "updated", values


# ---------------------------------------------------------------------------------------------
# Batch reduction: one statement may touch a row once, so a batch is reduced per key first
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetireRow:
    contract_key: str
    tenant_id: str
    client_id: str
    observed_at: datetime
    event_id: UUID
    correlation_id: str | None = None


@dataclass(frozen=True)
class ReducedRecords:
    upserts: list[tuple[int, StagedRecord]]
    """Per contract key the record to apply, with its position in the batch."""
    retires: list[RetireRow]
    superseded: list[StagedRecord]
    """Records of the batch that lost to a newer record of the same contract (counted unchanged)."""


def reduce_records(
    events: Sequence[tuple[int, StagedRecord | ContractRecordRetired]],
) -> ReducedRecords:
    """Reduce a batch's records (position, event; in offset order) to at most one upsert and one
    retire per contract.

    Per key the upsert kept is the one with the newest `psa_last_updated`, the later position on a
    tie (the merge's `DISTINCT ON (contract_key) ... ORDER BY psa_last_updated DESC, pos DESC`
    picks the same): applying only it leaves the same row as applying all of them in order, since
    older versions change nothing. A retire is kept only when it comes after the key's last mapped
    record, so a contract that re-appears later in the same batch is not left retired.
    """
    best: dict[str, tuple[int, StagedRecord]] = {}
    last_mapped: dict[str, int] = {}
    retires: dict[str, tuple[RetireRow, int]] = {}
    superseded: list[StagedRecord] = []
    for position, event in events:
        if isinstance(event, StagedRecord):
            key = event.contract_key
            last_mapped[key] = position
            held = best.get(key)
            if held is None:
                best[key] = (position, event)
            elif (event.psa_last_updated, position) >= (held[1].psa_last_updated, held[0]):
                superseded.append(held[1])
                best[key] = (position, event)
            else:
                superseded.append(event)
        else:
            data = event.data
            retire = RetireRow(
                contract_key=data.contract_key,
                tenant_id=data.tenant_id,
                client_id=data.client_id,
                observed_at=data.observed_at,
                event_id=event.id,
                correlation_id=event.correlationid,
            )
            held_retire = retires.get(data.contract_key)
            retires[data.contract_key] = (held_retire[0] if held_retire else retire, position)
    kept_retires = [r for key, (r, pos) in retires.items() if pos > last_mapped.get(key, -1)]
    return ReducedRecords(upserts=list(best.values()), retires=kept_retires, superseded=superseded)


def key_matches_tenant(contract_key: str, tenant_id: str) -> bool:
    """A contract key names its tenant (`cw:{tenant_id}:...`); a record may only touch its own."""
    return contract_key.startswith(f"cw:{tenant_id}:")


# ---------------------------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------------------------

CatalogState = Literal["new", "updated", "synced", "removed"]
CATALOG_STATES: tuple[CatalogState, ...] = ("new", "updated", "synced", "removed")


@dataclass(frozen=True)
class CatalogRow:
    contract_key: str
    tenant_id: str
    client_id: str
    kind: str
    agreement_id: int
    addition_id: int | None
    name: str
    summary: dict[str, Any]
    psa_last_updated: datetime
    observed_at: datetime
    event_id: UUID
    psa_digest: str | None = None
    """`schemas.psa_digest` of the item's mapped inputs (the same digest its record carries)."""


def catalog_state(
    *, removed_at: datetime | None, item_psa_last_updated: datetime, contract_psa_last_updated: datetime | None,
    has_contract: bool, item_psa_digest: str | None = None, contract_psa_digest: str | None = None,
) -> CatalogState:  # fmt: skip
    """State of one catalog item (the `catalog_item_states` view computes the same).

    removed: the PSA removed it; new: never synced into a contract; updated: the PSA version is
    newer than the linked contract's, or the same version with other content (both digests known
    and different: a second change within ConnectWise's one-second `lastUpdated`); synced: otherwise.
    """
    if removed_at is not None:
        return "removed"
    if not has_contract:
        return "new"
    if contract_psa_last_updated is None or item_psa_last_updated > contract_psa_last_updated:
        return "updated"
    if (
        item_psa_last_updated == contract_psa_last_updated
        and item_psa_digest is not None
        and contract_psa_digest is not None
        and item_psa_digest != contract_psa_digest
    ):
        return "updated"
    return "synced"


def count_states(states: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(CATALOG_STATES, 0)
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return counts


def _ref_name(value: Any) -> Any:
    return getattr(value, "name", None) if value is not None else None


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def catalog_rows(event: ObservedMessage) -> list[CatalogRow]:
    """The catalog rows one observed snapshot yields: the agreement, then each addition.

    An item's version is its own `_info.lastUpdated` (the snapshot's version when missing), so a
    change to one addition marks only that addition updated, not its agreement or siblings.
    """
    data = event.data
    agreement = data.agreement
    snapshot_version = data.psa_last_updated
    addition_digest = AdditionDigests(data)

    def version(info: Any) -> datetime:
        last = getattr(info, "last_updated", None) if info is not None else None
        return last if isinstance(last, datetime) and last.tzinfo is not None else snapshot_version

    agreement_summary = {
        "type": _ref_name(agreement.type),
        "agreement_status": agreement.agreement_status,
        "cancelled": agreement.cancelled_flag,
        "bill_amount": _json_value(agreement.bill_amount),
        "currency": agreement.currency.currency_code if agreement.currency else None,
        "billing_cycle": _ref_name(agreement.billing_cycle),
        "start_date": _json_value(agreement.start_date),
        "end_date": _json_value(agreement.end_date),
        "parent_agreement_id": agreement.parent_agreement.id if agreement.parent_agreement else None,
        "additions": len(data.additions),
    }
    rows = [
        CatalogRow(
            contract_key=f"cw:{data.tenant_id}:agreement:{agreement.id}",
            tenant_id=data.tenant_id,
            client_id=data.client_id,
            kind="agreement",
            agreement_id=agreement.id,
            addition_id=None,
            name=agreement.name,
            summary={k: v for k, v in agreement_summary.items() if v is not None},
            psa_last_updated=version(agreement.info),
            observed_at=data.observed_at,
            event_id=event.id,
            psa_digest=agreement_digest(data),
        )
    ]
    for addition in data.additions:
        product = addition.product
        name = (
            addition.description
            or addition.invoice_description
            or (product.identifier if product else None)
            or (product.name if product else None)
            or f"Addition {addition.id}"
        )
        summary = {
            "product": (product.identifier or product.name) if product else None,
            "quantity": _json_value(addition.quantity),
            "less_included": _json_value(addition.less_included),
            "unit_price": _json_value(addition.unit_price),
            "bill_customer": addition.bill_customer,
            "effective_date": _json_value(addition.effective_date),
            "cancelled_date": _json_value(addition.cancelled_date),
        }
        rows.append(
            CatalogRow(
                contract_key=f"cw:{data.tenant_id}:addition:{addition.id}",
                tenant_id=data.tenant_id,
                client_id=data.client_id,
                kind="addition",
                agreement_id=agreement.id,
                addition_id=addition.id,
                name=name,
                summary={k: v for k, v in summary.items() if v is not None},
                psa_last_updated=version(addition.info),
                observed_at=data.observed_at,
                event_id=event.id,
                psa_digest=addition_digest(addition),
            )
        )
    return rows


def reduce_catalog(events: Sequence[ObservedMessage]) -> list[CatalogRow]:
    """One row per catalog key: the newest (`psa_last_updated`, `observed_at`), later on a tie."""
    best: dict[str, CatalogRow] = {}
    for event in events:
        for row in catalog_rows(event):
            held = best.get(row.contract_key)
            if held is None or (row.psa_last_updated, row.observed_at) >= (
                held.psa_last_updated,
                held.observed_at,
            ):
                best[row.contract_key] = row
    return list(best.values())


@dataclass(frozen=True)
class CatalogRemoval:
    tenant_id: str
    client_id: str
    agreement_id: int
    addition_id: int | None
    observed_at: datetime
    event_id: UUID


def catalog_removal(event: AgreementRemoved | AdditionRemoved) -> CatalogRemoval:
    data = event.data
    return CatalogRemoval(
        tenant_id=data.tenant_id,
        client_id=data.client_id,
        agreement_id=data.agreement_id,
        addition_id=event.data.addition_id if isinstance(event, AdditionRemoved) else None,
        observed_at=data.observed_at,
        event_id=event.id,
    )


# ---------------------------------------------------------------------------------------------
# Local edits
# ---------------------------------------------------------------------------------------------

EditReason = Literal["psa_owned_field", "unknown_field", "invalid_value", "unknown_contract", "cross_tenant"]

_STATUSES: frozenset[str] = frozenset(get_args(Status))
_CYCLES: frozenset[str] = frozenset(get_args(BillingCycle))
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
MAX_TAGS = 50
MAX_TAG_CHARS = 64
MAX_REMINDERS = 50

_TEXT_LIMITS: dict[str, tuple[int, bool]] = {
    # field: (max length, may be null/empty)
    "name": (300, False),
    "contract_type": (200, False),
    "description": (10_000, True),
    "notes": (10_000, True),
    "owner": (200, True),
    "impact": (200, True),
}


@dataclass(frozen=True)
class EditDecision:
    """The outcome of one local edit: either columns to set, or a rejection naming the fields."""

    accepted: bool
    columns: dict[str, Any] = field(default_factory=dict)
    """Column values to write (effective seeded, local, or PSA-owned of a local contract)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Seeded fields that become local overrides, with their JSON value."""
    reverted: tuple[str, ...] = ()
    """Seeded fields of a PSA-synced contract set back to exactly the PSA's value: their override
    ends, so later syncs write them again ("revert to the PSA value")."""
    reason: EditReason | None = None
    fields: tuple[str, ...] = ()
    message: str = ""

    @classmethod
    def reject(cls, reason: EditReason, fields: Sequence[str], message: str) -> EditDecision:
        return cls(accepted=False, reason=reason, fields=tuple(fields), message=message[:2000])


class InvalidValue(ValueError):
    """A value of an edit that does not fit its field."""


def _text(name: str, value: object) -> str | None:
    limit, nullable = _TEXT_LIMITS[name]
    if value is None:
        if nullable:
            return None
        raise InvalidValue(f"{name} may not be empty")
    if not isinstance(value, str):
        raise InvalidValue(f"{name} must be a string")
    stripped = value.strip()
    if not stripped and not nullable:
        raise InvalidValue(f"{name} may not be empty")
    if len(value) > limit:
        raise InvalidValue(f"{name} is longer than {limit} characters")
    return value


def _date(name: str, value: object) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidValue(f"{name} must be an ISO date (YYYY-MM-DD) or null")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidValue(f"{name} must be an ISO date (YYYY-MM-DD) or null") from None


def _tags(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise InvalidValue("tags must be a list of strings")
    cleaned: list[str] = []
    for tag in value:
        tag = tag.strip()
        if not tag or len(tag) > MAX_TAG_CHARS:
            raise InvalidValue(f"each tag must have 1 to {MAX_TAG_CHARS} characters")
        if tag not in cleaned:
            cleaned.append(tag)
    if len(cleaned) > MAX_TAGS:
        raise InvalidValue(f"at most {MAX_TAGS} tags")
    return cleaned


def _reminders(value: object) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_REMINDERS:
        raise InvalidValue(f"reminders must be a list of at most {MAX_REMINDERS} objects")
    reminders: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("date"), str):
            raise InvalidValue('each reminder must be an object with an ISO "date"')
        _date("reminders.date", item["date"])
        note = item.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > 1000):
            raise InvalidValue("a reminder's note must be a string of at most 1000 characters")
        unknown = set(item) - {"date", "note"}
        if unknown:
            raise InvalidValue(f"unknown reminder keys: {', '.join(sorted(unknown))}")
        reminders.append({"date": item["date"], **({"note": note} if note is not None else {})})
    return reminders


def _money(value: object) -> tuple[Decimal, str]:
    if not isinstance(value, dict) or set(value) != {"amount", "currency"}:
        raise InvalidValue('billing_cost must be {"amount": "<decimal>", "currency": "<ISO 4217>"}')
    amount, currency = value["amount"], value["currency"]
    if not isinstance(amount, str) or not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
        raise InvalidValue("billing_cost amount is a decimal string and currency an ISO 4217 code")
    try:
        parsed = Decimal(amount)
    except InvalidOperation:
        raise InvalidValue("billing_cost amount is not a decimal") from None
    if not parsed.is_finite() or abs(parsed) >= Decimal(10) ** 15:
        raise InvalidValue("billing_cost amount is out of range")
    return parsed, currency


def _owned_columns(changes: Mapping[str, object]) -> dict[str, Any]:
    """PSA-owned fields of a purely local contract, as columns (`billing_cost` is amount + currency)."""
    columns: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "status":
            if value not in _STATUSES:
                raise InvalidValue(f"status must be one of {', '.join(sorted(_STATUSES))}")
            columns["status"] = value
        elif name == "billing_cycle":
            if value not in _CYCLES:
                raise InvalidValue(f"billing_cycle must be one of {', '.join(sorted(_CYCLES))}")
            columns["billing_cycle"] = value
        elif name == "billing_cost":
            columns["billing_amount"], columns["billing_currency"] = _money(value)
        elif name == "billing_amount":
            if not isinstance(value, str):
                raise InvalidValue("billing_amount is a decimal string")
            columns["billing_amount"] = _money({"amount": value, "currency": "XXX"})[0]
        elif name in ("billing_currency", "currency"):
            if not isinstance(value, str) or not _CURRENCY_RE.match(value):
                raise InvalidValue(f"{name} must be an ISO 4217 code")
            columns["billing_currency"] = value
    return columns


def decide_edit(
    *,
    tenant_id: str,
    client_id: str,
    contract_id: str,
    changes: Mapping[str, object],
    stored: StoredContract | None,
) -> EditDecision:
    """Decide one `contract.command.edit` against the stored contract (None: not found).

    Rejected whole (nothing applied) when: the contract belongs to another tenant or client or
    does not exist; any field is PSA-owned on a PSA-synced contract (`psa_owned_field`, naming
    those fields); any field is unknown; any value is invalid (`invalid_value`). Otherwise the
    seeded fields become overrides (or, set to exactly the PSA's value of a PSA-synced contract, end
    their override) and local fields are set.
    """
    if not key_matches_tenant(contract_id, tenant_id) and contract_id.startswith("cw:"):
        return EditDecision.reject(
            "cross_tenant", (), f"contract {contract_id} is not a contract of tenant {tenant_id}"
        )
    if stored is None:
        return EditDecision.reject(
            "unknown_contract", (), f"no contract {contract_id} for tenant {tenant_id}"
        )
    if stored.tenant_id != tenant_id or stored.client_id != client_id:
        return EditDecision.reject(
            "cross_tenant", (), f"contract {contract_id} is not a contract of client {tenant_id}:{client_id}"
        )
    split = split_edit(changes, psa_synced=stored.psa_synced)
    if split.psa_owned:
        return EditDecision.reject(
            "psa_owned_field",
            split.psa_owned,
            f"{', '.join(split.psa_owned)} of a PSA-synced contract are owned by the PSA and read-only",
        )
    if split.unknown:
        return EditDecision.reject(
            "unknown_field", split.unknown, f"unknown fields: {', '.join(split.unknown)}"
        )
    columns: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    reverted: list[str] = []
    current_field = ""
    try:
        for name, value in split.seeded.items():
            current_field = name
            if name in ("start_date", "end_date"):
                parsed_date = _date(name, value)
                columns[name] = parsed_date
                override: Any = parsed_date.isoformat() if parsed_date else None
            else:
                columns[name] = _text(name, value)
                override = columns[name]
            if stored.psa_synced and columns[name] == stored.values.get(f"psa_{name}"):
                reverted.append(name)
            else:
                overrides[name] = override
        for name, value in split.local.items():
            current_field = name
            if field_class(name) == "psa_owned":
                columns.update(_owned_columns({name: value}))
            elif name == "tags":
                columns["tags"] = _tags(value)
            elif name == "reminders":
                columns["reminders"] = _reminders(value)
            else:
                columns[name] = _text(name, value)
        current_field = "start_date"
        start = columns.get("start_date", stored.values.get("start_date"))
        end = columns.get("end_date", stored.values.get("end_date"))
        if isinstance(start, date) and isinstance(end, date) and end < start:
            current_field = "end_date" if "end_date" in columns else "start_date"
            raise InvalidValue("end_date is before start_date")
    except InvalidValue as error:
        return EditDecision.reject("invalid_value", (current_field,), str(error))
    return EditDecision(accepted=True, columns=columns, overrides=overrides, reverted=tuple(reverted))


def edit_fields_summary() -> dict[str, tuple[str, ...]]:
    """Editable fields by ownership class (for help texts)."""
    return {"psa_owned": PSA_OWNED, "psa_seeded": PSA_SEEDED, "local": LOCAL}


def with_overrides(stored: StoredContract, overrides: Mapping[str, Any]) -> StoredContract:
    """`stored` with more local overrides (helper for tests and the reference merge)."""
    return replace(stored, local_overrides={**stored.local_overrides, **overrides})
