"""Tolerant models of what ConnectWise returns (docs/connectwise.md#models).

Guarantees:
* Every field is optional (ConnectWise omits nulls, `fields=` trims answers) and unknown fields are
  kept (`extra="allow"`), so a newer API version or a custom field never breaks a poll.
* Dirty values never fail a row: an unparseable date becomes None, a reference without an id
  (`{}` or `{"_info": {...}}`) is kept with `id=None`.
* `raw` is the JSON object exactly as ConnectWise sent it (what `psa.agreement.observed`
  carries); the typed attributes are conveniences read from it. Money is `Decimal`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr


def _lenient_datetime(value: Any) -> Any:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _lenient_decimal(value: Any) -> Any:
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        try:
            result = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        except (InvalidOperation, ValueError):
            return None
        return result if result.is_finite() else None
    return None


def _lenient_int(value: Any) -> Any:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _lenient_str(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(value)
    return None


def _lenient_bool(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    return None


def _info_map(value: Any) -> Any:
    if not isinstance(value, dict):
        return {}
    return {str(k): (v if v is None or isinstance(v, str) else str(v)) for k, v in value.items()}


CwDateTime = Annotated[datetime | None, BeforeValidator(_lenient_datetime)]
CwDecimal = Annotated[Decimal | None, BeforeValidator(_lenient_decimal)]
CwInt = Annotated[int | None, BeforeValidator(_lenient_int)]
CwStr = Annotated[str | None, BeforeValidator(_lenient_str)]
CwBool = Annotated[bool | None, BeforeValidator(_lenient_bool)]
InfoMap = Annotated[dict[str, str | None], BeforeValidator(_info_map)]


class CwModel(BaseModel):
    """Base: optional fields, unknown fields kept, the raw JSON object available as `raw`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=False)

    info: InfoMap = Field(default_factory=dict, alias="_info")
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Build from one JSON object as ConnectWise returned it (never fails on a dict)."""
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        model = cls.model_validate(data)
        model._raw = data
        return model

    @property
    def raw(self) -> dict[str, Any]:
        """The JSON object as received (do not mutate)."""
        return self._raw

    @property
    def last_updated(self) -> datetime | None:
        """`_info.lastUpdated` parsed (None if missing or unparseable)."""
        parsed = _lenient_datetime(self.info.get("lastUpdated"))
        return parsed if isinstance(parsed, datetime) else None


def _reference(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        return None
    return value


class Reference(BaseModel):
    """A ConnectWise reference `{id, name, identifier, _info}`; any of them may be missing."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: CwInt = None
    name: CwStr = None
    identifier: CwStr = None
    info: InfoMap = Field(default_factory=dict, alias="_info")


Ref = Annotated[Reference | None, BeforeValidator(_reference)]


class CurrencyReference(Reference):
    symbol: CwStr = None
    currencyCode: CwStr = None


Currency = Annotated[CurrencyReference | None, BeforeValidator(_reference)]


class AgreementReference(Reference):
    type: CwStr = None


ParentRef = Annotated[AgreementReference | None, BeforeValidator(_reference)]


class Agreement(CwModel):
    """`/finance/agreements` item (field names as ConnectWise spells them)."""

    id: CwInt = None
    name: CwStr = None
    type: Ref = None
    company: Ref = None
    contact: Ref = None
    site: Ref = None
    parentAgreement: ParentRef = None
    startDate: CwDateTime = None
    endDate: CwDateTime = None
    noEndingDateFlag: CwBool = None
    cancelledFlag: CwBool = None
    dateCancelled: CwDateTime = None
    reasonCancelled: CwStr = None
    oneTimeFlag: CwBool = None
    billingCycle: Ref = None
    billOneTimeFlag: CwBool = None
    billAmount: CwDecimal = None
    billStartDate: CwDateTime = None
    currency: Currency = None
    agreementStatus: CwStr = None
    internalNotes: CwStr = None
    invoiceDescription: CwStr = None
    customerPO: CwStr = None


class Addition(CwModel):
    """`/finance/agreements/{id}/additions` item."""

    id: CwInt = None
    agreementId: CwInt = None
    product: Ref = None
    description: CwStr = None
    invoiceDescription: CwStr = None
    quantity: CwDecimal = None
    lessIncluded: CwDecimal = None
    unitPrice: CwDecimal = None
    unitCost: CwDecimal = None
    extPrice: CwDecimal = None
    billCustomer: CwStr = None
    effectiveDate: CwDateTime = None
    cancelledDate: CwDateTime = None
    agreementStatus: CwStr = None
    sequenceNumber: CwDecimal = None
    uom: CwStr = None


class Company(CwModel):
    """`/company/companies` item."""

    id: CwInt = None
    identifier: CwStr = None
    name: CwStr = None
    status: Ref = None
    deletedFlag: CwBool = None
    timeZoneSetup: Ref = None
    currency: Currency = None


class SystemInfo(CwModel):
    """`/system/info`."""

    version: CwStr = None
    isCloud: CwBool = None
    serverTimeZone: CwStr = None
    cloudRegion: CwStr = None


class CompanyInfo(BaseModel):
    """`/login/companyinfo/{company}` (PascalCase keys, `IsCloud` is a string)."""

    model_config = ConfigDict(extra="allow")

    CompanyName: CwStr = None
    Codebase: CwStr = None
    VersionCode: CwStr = None
    VersionNumber: CwStr = None
    CompanyID: CwStr = None
    IsCloud: CwBool = None


class CallbackEntry(CwModel):
    """`/system/callbacks` item."""

    id: CwInt = None
    url: CwStr = None
    objectId: CwInt = None
    type: CwStr = None
    level: CwStr = None
    description: CwStr = None
    memberId: CwInt = None
    payloadVersion: CwStr = None
    inactiveFlag: CwBool = None
    isSoapCallbackFlag: CwBool = None
    isSelfSuppressedFlag: CwBool = None
    connectWiseID: CwStr = None
