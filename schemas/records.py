"""Contract records on `contracts.records.v1`, produced by the mapper (docs/design.md#contract-records)."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

from schemas.envelope import CloudEvent, Payload, UtcDatetime, WireModel
from schemas.psa_digest import DIGEST_PATTERN

_DECIMAL_RE = re.compile(r"^-?\d{1,15}(\.\d{1,6})?$")


def _decimal_from_string(value: Any) -> Any:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str) and _DECIMAL_RE.match(value):
        return Decimal(value)
    raise ValueError("money amounts are decimal strings such as '1500.00' (never JSON numbers)")


DecimalString = Annotated[
    Decimal,
    BeforeValidator(_decimal_from_string),
    PlainSerializer(str, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": _DECIMAL_RE.pattern}),
]

Status = Literal["active", "pending", "inactive", "expired", "cancelled"]
BillingCycle = Literal[
    "weekly", "bi_weekly", "monthly", "bi_monthly", "quarterly", "semi_annual", "annual", "one_time"
]
Category = Literal["recurring", "fixed_cost"]
Kind = Literal["agreement", "addition"]
ContractKey = Annotated[
    str,
    Field(
        pattern=r"^cw:[a-z0-9][a-z0-9_-]{0,62}:(agreement|addition):[1-9]\d{0,9}$",
        description="`cw:{tenant_id}:agreement:{id}` or `cw:{tenant_id}:addition:{id}`; stable, never reused",
    ),
]


class Money(WireModel):
    amount: DecimalString
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")


class RecordSource(WireModel):
    psa: Literal["connectwise"] = "connectwise"
    kind: Kind
    agreement_id: int
    addition_id: int | None = None
    psa_last_updated: UtcDatetime = Field(description="Version of the PSA item; older never overwrites newer")
    psa_digest: str | None = Field(
        default=None,
        pattern=DIGEST_PATTERN,
        description="Digest of the PSA inputs the record was mapped from (schemas.psa_digest): with "
        "`psa_last_updated` it identifies what was mapped, as ConnectWise versions have one-second "
        "resolution. Absent only in records of mappers before it existed",
    )


class ContractRecordData(Payload):
    contract_key: ContractKey
    source: RecordSource
    parent_contract_key: ContractKey | None = None
    name: str = Field(max_length=300)
    contract_type: str = Field(max_length=200)
    category: Category
    status: Status
    billing_cost: Money
    billing_cycle: BillingCycle
    start_date: date | None = None
    end_date: date | None = None
    description: str | None = Field(default=None, max_length=10_000)
    explanation: dict[str, str] = Field(
        default_factory=dict, description="Per field, the rule and inputs that produced its value"
    )


class RetiredSource(WireModel):
    psa: Literal["connectwise"] = "connectwise"
    kind: Kind
    agreement_id: int
    addition_id: int | None = None


class ContractRetiredData(Payload):
    """The PSA item was removed: the contract is kept and marked, never deleted."""

    contract_key: ContractKey
    source: RetiredSource
    observed_at: UtcDatetime
    evidence: str = Field(max_length=500)


class ContractRecordMapped(CloudEvent):
    type: Literal["contract.record.mapped"] = "contract.record.mapped"
    data: ContractRecordData


class ContractRecordRetired(CloudEvent):
    type: Literal["contract.record.retired"] = "contract.record.retired"
    data: ContractRetiredData


class ContractRestoredData(Payload):
    """A retired PSA item answered again (ConnectWise returned it after its removal was recorded):
    the contract is active again. Applies only to a contract retired before `observed_at`."""

    contract_key: ContractKey
    source: RetiredSource
    observed_at: UtcDatetime
    evidence: str = Field(max_length=500)


class ContractRecordRestored(CloudEvent):
    type: Literal["contract.record.restored"] = "contract.record.restored"
    data: ContractRestoredData


def contract_key(tenant_id: str, kind: Kind, item_id: int) -> str:
    return f"cw:{tenant_id}:{kind}:{item_id}"
