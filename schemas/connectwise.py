"""ConnectWise Manage shapes as carried inside `psa.agreement.observed` (docs/connectwise.md#models).

Tolerant by design: ConnectWise adds fields between releases and omits nulls, so every model
keeps unknown fields (`extra="allow"`) and treats missing keys as null. Only the fields the
mapping rules read are typed. Money and quantities arrive as JSON numbers (ConnectWise uses
doubles); they are parsed to `Decimal` through their shortest decimal text and written back
as the same JSON numbers, so a snapshot round-trips unchanged. Timestamps use ConnectWise's
`YYYY-MM-DDTHH:MM:SSZ` form on the way out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema


def _number_to_decimal(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def _decimal_to_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


CwNumber = Annotated[
    Decimal,
    BeforeValidator(_number_to_decimal),
    PlainSerializer(_decimal_to_number, return_type=float, when_used="json"),
    WithJsonSchema({"type": "number"}),
]
"""A ConnectWise JSON number, held as Decimal and serialised back as a JSON number."""


def _format_cw_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


CwDatetime = Annotated[
    datetime,
    PlainSerializer(_format_cw_datetime, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class CwModel(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="allow", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )


class CwInfo(CwModel):
    last_updated: CwDatetime | None = Field(default=None, alias="lastUpdated")
    updated_by: str | None = Field(default=None, alias="updatedBy")


class CwReference(CwModel):
    """`{id, name, _info}` (company references add `identifier`); may be `{}` when unset."""

    id: int | None = None
    name: str | None = None
    identifier: str | None = None


class CwCurrency(CwReference):
    currency_code: str | None = Field(default=None, alias="currencyCode")
    number_of_decimals: int | None = Field(default=None, alias="numberOfDecimals")


AgreementStatus = Literal["Active", "Cancelled", "Expired", "Inactive"]
BillCustomer = Literal["Billable", "DoNotBill", "NoCharge"]


class CwAgreement(CwModel):
    """An agreement as ConnectWise returns it (`/finance/agreements/{id}`)."""

    id: int
    name: str
    type: CwReference | None = None
    company: CwReference | None = None
    parent_agreement: CwReference | None = Field(default=None, alias="parentAgreement")
    start_date: CwDatetime | None = Field(default=None, alias="startDate")
    end_date: CwDatetime | None = Field(default=None, alias="endDate")
    no_ending_date_flag: bool | None = Field(default=None, alias="noEndingDateFlag")
    cancelled_flag: bool | None = Field(default=None, alias="cancelledFlag")
    date_cancelled: CwDatetime | None = Field(default=None, alias="dateCancelled")
    agreement_status: AgreementStatus | None = Field(default=None, alias="agreementStatus")
    billing_cycle: CwReference | None = Field(default=None, alias="billingCycle")
    bill_amount: CwNumber | None = Field(default=None, alias="billAmount")
    bill_one_time_flag: bool | None = Field(default=None, alias="billOneTimeFlag")
    one_time_flag: bool | None = Field(default=None, alias="oneTimeFlag")
    currency: CwCurrency | None = None
    invoice_description: str | None = Field(default=None, alias="invoiceDescription")
    info: CwInfo | None = Field(default=None, alias="_info")


class CwAddition(CwModel):
    """An agreement addition as ConnectWise returns it (`/finance/agreements/{id}/additions/{id}`)."""

    id: int
    product: CwReference | None = None
    quantity: CwNumber | None = None
    less_included: CwNumber | None = Field(default=None, alias="lessIncluded")
    unit_price: CwNumber | None = Field(default=None, alias="unitPrice")
    bill_customer: BillCustomer | None = Field(default=None, alias="billCustomer")
    effective_date: CwDatetime | None = Field(default=None, alias="effectiveDate")
    cancelled_date: CwDatetime | None = Field(default=None, alias="cancelledDate")
    agreement_id: int | None = Field(default=None, alias="agreementId")
    description: str | None = None
    invoice_description: str | None = Field(default=None, alias="invoiceDescription")
    agreement_status: AgreementStatus | None = Field(default=None, alias="agreementStatus")
    info: CwInfo | None = Field(default=None, alias="_info")
