"""Compiled (msgspec) codecs for the hot messages: `psa.agreement.observed` (decoded by the mapper
and the writer), `contract.record.mapped` (encoded by the mapper, decoded by the writer) and
`contract.record.retired` (encoded by the mapper). The pydantic models in `schemas/` stay the
definition (JSON Schema, AsyncAPI, every other message); this module is a faster path that never
disagrees with them.

* `decode_observed(raw)` / `decode_mapped(raw)` decode the *canonical* form of their message: the
  structure (required and unknown fields, JSON types, literals, lengths, the key pattern) is checked
  in C while decoding, the rest (patterns, timestamps, subject) in Python. They return the event
  (`ObservedEvent`: the attributes of `schemas.psa.AgreementObserved` the services read, the same
  values; `MappedRecord`), or None for anything they are not sure about - another type, a
  non-canonical spelling (a number as a string, another timestamp form, a field by its Python
  name), nesting deep enough to near pydantic's JSON depth limit, an invalid message - and then
  `schemas.topics.parse` decides, with its usual reasons.
* `encode_mapped(fields, ...)` / `encode_retired(...)` serialise a record straight to the bytes
  the pydantic model writes (`ContractRecordMapped.build(...).to_bytes()`, same event id and time).
  Nothing is validated: the caller (the mapper's rules) builds valid fields.
* `ObservedSnapshot` and its parts are the read-only shape of an observed snapshot that the
  mapping rules and the writer's catalog read: both the pydantic models and the decoded structs
  have it.

Contract (property tests in `tests/unit/schemas/test_fast_observed.py`,
`tests/unit/writer/test_writer_fast_decode.py` and `tests/unit/mapper/test_mapper_mapping_properties.py`):
a decoder returns a message only when pydantic accepts it, with the values pydantic gives it,
and it returns one for every message the producer (the poller's pydantic model, `encode_mapped`)
writes; the encoders are byte-identical to the pydantic models' JSON. So the combined decoder (fast
path, else pydantic) accepts and rejects exactly what pydantic accepts and rejects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, NamedTuple, Protocol
from uuid import UUID

import msgspec
from msgspec import Meta, Struct

from schemas.envelope import CLIENT_ID_PATTERN, TENANT_ID_PATTERN
from schemas.psa_digest import DIGEST_PATTERN
from schemas.records import ContractRecordMapped, ContractRecordRetired

__all__ = [
    "MAPPED_TYPE",
    "OBSERVED_TYPE",
    "RETIRED_TYPE",
    "MappedRecord",
    "ObservedEvent",
    "ObservedMessage",
    "ObservedSnapshot",
    "RecordFields",
    "decode_mapped",
    "decode_observed",
    "encode_mapped",
    "encode_retired",
    "new_event_id",
]

MAPPED_TYPE: Final[str] = ContractRecordMapped.model_fields["type"].default

RecordFields = dict[str, Any]
"""A contract record's `data` as plain values, in the wire's field order, absent fields omitted
(never None): Decimal amount, `date` dates, UTC `datetime` version."""


# The constraints of schemas.records / schemas.envelope, as compiled patterns used with fullmatch
# (pydantic's patterns are anchored with ^...$ in the Rust engine: no trailing-newline match).
_TENANT = re.compile(TENANT_ID_PATTERN)
_CLIENT = re.compile(CLIENT_ID_PATTERN)
_DECIMAL = re.compile(r"^-?\d{1,15}(\.\d{1,6})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DIGEST = re.compile(DIGEST_PATTERN)

_KEY_PATTERN = r"^cw:[a-z0-9][a-z0-9_-]{0,62}:(agreement|addition):[1-9]\d{0,9}\Z"
"""The contract key (schemas.records) for msgspec, which applies patterns with `re.search`: anchored,
and `\\Z` rather than `$` (which would also match before a trailing newline)."""
_ContractKey = Annotated[str, Meta(pattern=_KEY_PATTERN)]


class _Source(Struct, forbid_unknown_fields=True):
    kind: Literal["agreement", "addition"]
    agreement_id: int
    psa_last_updated: str
    psa: Literal["connectwise"] = "connectwise"
    addition_id: int | None = None
    psa_digest: str | None = None


class _Money(Struct, forbid_unknown_fields=True):
    amount: str
    currency: str


class _Data(Struct, forbid_unknown_fields=True):
    tenant_id: str
    client_id: str
    contract_key: _ContractKey
    source: _Source
    name: Annotated[str, Meta(max_length=300)]
    contract_type: Annotated[str, Meta(max_length=200)]
    category: Literal["recurring", "fixed_cost"]
    status: Literal["active", "pending", "inactive", "expired", "cancelled"]
    billing_cost: _Money
    billing_cycle: Literal[
        "weekly", "bi_weekly", "monthly", "bi_monthly", "quarterly", "semi_annual", "annual", "one_time"
    ]
    parent_contract_key: _ContractKey | None = None
    start_date: str | None = None
    end_date: str | None = None
    description: Annotated[str, Meta(max_length=10_000)] | None = None
    explanation: dict[str, str] = msgspec.field(default_factory=dict)


class _Envelope(Struct):
    """The CloudEvent envelope (unknown attributes ignored, as the pydantic model does)."""

    specversion: Literal["1.0"]
    type: Literal["contract.record.mapped"]
    id: UUID  # hyphenated or 32 hex digits, any case: a subset of what pydantic takes, same value
    source: Annotated[str, Meta(min_length=1, max_length=200)]
    time: str
    subject: str
    tenantid: str
    data: _Data
    datacontenttype: Literal["application/json"] = "application/json"
    correlationid: Annotated[str, Meta(max_length=200)] | None = None


_DECODE = msgspec.json.Decoder(_Envelope).decode
"""JSON decoding with the structural checks done in C: required and unknown fields, JSON types (no
bool for an int, no number for a string), literals, lengths, the contract-key pattern."""


class _Decline(Exception):
    """Not canonical: let pydantic decide."""


def _str(value: Any, max_length: int, min_length: int = 0) -> str:
    if type(value) is not str or not min_length <= len(value) <= max_length:
        raise _Decline
    return value


def _match(pattern: re.Pattern[str], value: Any) -> str:
    if type(value) is not str or pattern.fullmatch(value) is None:
        raise _Decline
    return value


def _datetime(value: Any) -> datetime:
    parsed = datetime.fromisoformat(_match(_DATETIME, value))  # ValueError: declined by the caller
    # `fromisoformat` gives `timezone.utc` itself for "Z"/"+00:00": no conversion needed then
    return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)


_TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
"""A timestamp whose time of day and offset are in range by the pattern alone (the date is checked
apart, once per distinct day)."""
_DAYS: set[str] = set()


def _check_time(value: Any) -> None:
    """Validate a timestamp whose value is not needed (the envelope's `time`): same acceptance as
    `_datetime` (a subset of pydantic's), without building the datetime."""
    if type(value) is not str:
        raise _Decline
    matched = _TIME.fullmatch(value)
    if matched is None:
        _datetime(value)  # rarer spellings (e.g. "+24:00" is refused there too)
        return
    day = matched.group(1)
    if day not in _DAYS:
        date.fromisoformat(day)  # ValueError (e.g. February 30th): declined by the caller
        if len(_DAYS) >= _CACHE_MAX:
            _DAYS.clear()
        _DAYS.add(day)


_SUBJECTS: dict[tuple[Any, Any], str] = {}
"""(tenant_id, client_id) pairs already validated -> their subject (tenants and clients repeat;
bounded: cleared when it grows past `_CACHE_MAX`)."""
_CURRENCIES: set[Any] = set()
_CACHE_MAX = 65_536
_AMOUNTS: dict[Any, Decimal] = {}
"""Amount texts already validated -> their Decimal (prices repeat; Decimals are immutable)."""
_DATES: dict[Any, date] = {}
"""Date texts already validated -> their date."""


def _date(value: Any) -> date:
    parsed = _DATES.get(value)
    if parsed is None:
        parsed = date.fromisoformat(_match(_DATE, value))  # ValueError: declined by the caller
        if len(_DATES) >= _CACHE_MAX:
            _DATES.clear()
        _DATES[value] = parsed
    return parsed


def _subject(tenant: Any, client: Any) -> str:
    pair = (tenant, client)
    subject = _SUBJECTS.get(pair)
    if subject is None:
        _match(_TENANT, tenant)
        _match(_CLIENT, client)
        if len(_SUBJECTS) >= _CACHE_MAX:
            _SUBJECTS.clear()
        subject = _SUBJECTS[pair] = f"{tenant}:{client}"
    return subject


class MappedRecord(NamedTuple):
    """A `contract.record.mapped` that pydantic would accept, with the values it would give:
    `data` as decoded, plus the converted version, amount and dates."""

    id: UUID
    correlationid: str | None
    data: _Data
    psa_last_updated: datetime
    amount: Decimal
    start_date: date | None
    end_date: date | None


def decode_mapped(raw: bytes) -> MappedRecord | None:
    """The record of a canonical `contract.record.mapped` message, or None when the message is
    anything else (another type, not canonical, or invalid): then use `schemas.topics.parse`."""
    try:
        return _decode(raw) if _shallow(raw) else None
    except (_Decline, ValueError, TypeError, KeyError, AttributeError, RecursionError, msgspec.MsgspecError):
        return None


def _decode(raw: bytes) -> MappedRecord:
    doc = _DECODE(raw)  # msgspec.ValidationError / DecodeError (ValueErrors): declined by the caller
    data = doc.data
    source = data.source
    money = data.billing_cost
    _check_time(doc.time)
    tenant = data.tenant_id
    if doc.subject != _subject(tenant, data.client_id) or doc.tenantid != tenant:
        raise _Decline
    # payload (the key pattern, literals and lengths were checked while decoding)
    version = _datetime(source.psa_last_updated)
    amount_text = money.amount
    amount = _AMOUNTS.get(amount_text)
    if amount is None:
        amount = Decimal(_match(_DECIMAL, amount_text))
        if len(_AMOUNTS) >= _CACHE_MAX:
            _AMOUNTS.clear()
        _AMOUNTS[amount_text] = amount
    currency = money.currency
    if currency not in _CURRENCIES:
        _match(_CURRENCY, currency)
        if len(_CURRENCIES) < _CACHE_MAX:
            _CURRENCIES.add(currency)
    if source.psa_digest is not None:
        _match(_DIGEST, source.psa_digest)
    start = data.start_date
    end = data.end_date
    return MappedRecord(
        doc.id,
        doc.correlationid,
        data,
        version,
        amount,
        None if start is None else _date(start),
        None if end is None else _date(end),
    )


# -- the snapshot as the rules read it ---------------------------------------------------------


class ReferenceView(Protocol):
    """`schemas.connectwise.CwReference`, read-only."""

    @property
    def id(self) -> int | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def identifier(self) -> str | None: ...


class CurrencyView(ReferenceView, Protocol):
    @property
    def currency_code(self) -> str | None: ...
    @property
    def number_of_decimals(self) -> int | None: ...


class InfoView(Protocol):
    @property
    def last_updated(self) -> datetime | None: ...


class AgreementView(Protocol):
    """`schemas.connectwise.CwAgreement`: the fields the mapping rules and the catalog read."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def type(self) -> ReferenceView | None: ...
    @property
    def parent_agreement(self) -> ReferenceView | None: ...
    @property
    def start_date(self) -> datetime | None: ...
    @property
    def end_date(self) -> datetime | None: ...
    @property
    def no_ending_date_flag(self) -> bool | None: ...
    @property
    def cancelled_flag(self) -> bool | None: ...
    @property
    def agreement_status(self) -> Literal["Active", "Cancelled", "Expired", "Inactive"] | None: ...
    @property
    def billing_cycle(self) -> ReferenceView | None: ...
    @property
    def bill_amount(self) -> Decimal | None: ...
    @property
    def bill_one_time_flag(self) -> bool | None: ...
    @property
    def currency(self) -> CurrencyView | None: ...
    @property
    def invoice_description(self) -> str | None: ...
    @property
    def info(self) -> InfoView | None: ...


class AdditionView(Protocol):
    """`schemas.connectwise.CwAddition`: the fields the mapping rules and the catalog read."""

    @property
    def id(self) -> int: ...
    @property
    def product(self) -> ReferenceView | None: ...
    @property
    def quantity(self) -> Decimal | None: ...
    @property
    def less_included(self) -> Decimal | None: ...
    @property
    def unit_price(self) -> Decimal | None: ...
    @property
    def bill_customer(self) -> Literal["Billable", "DoNotBill", "NoCharge"] | None: ...
    @property
    def effective_date(self) -> datetime | None: ...
    @property
    def cancelled_date(self) -> datetime | None: ...
    @property
    def agreement_id(self) -> int | None: ...
    @property
    def description(self) -> str | None: ...
    @property
    def invoice_description(self) -> str | None: ...
    @property
    def info(self) -> InfoView | None: ...


class ObservedSnapshot(Protocol):
    """`schemas.psa.AgreementObservedData` (pydantic) or `ObservedDataStruct` (decoded here), read-only."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def agreement(self) -> AgreementView: ...
    @property
    def additions(self) -> Sequence[AdditionView]: ...
    @property
    def psa_last_updated(self) -> datetime: ...
    @property
    def observed_at(self) -> datetime: ...
    @property
    def time_zone(self) -> str: ...
    @property
    def default_currency(self) -> str: ...


class ObservedMessage(Protocol):
    """`schemas.psa.AgreementObserved` or `ObservedEvent`: what the services read of the envelope."""

    @property
    def id(self) -> UUID: ...
    @property
    def type(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def tenantid(self) -> str: ...
    @property
    def key(self) -> bytes: ...
    @property
    def data(self) -> ObservedSnapshot: ...


# -- psa.agreement.observed ----------------------------------------------------------------------

_MAX_OPENERS: Final = 200
"""pydantic's JSON parser refuses nesting deeper than ~254 levels, msgspec goes deeper: a message
with this many `{`/`[` bytes (inside strings too) could nest that deep, so it is declined."""


def _shallow(raw: bytes) -> bool:
    """No value of `raw` can nest deeper than pydantic's JSON parser allows (counted in C)."""
    return raw.count(b"{") + raw.count(b"[") < _MAX_OPENERS


class CwDecimal(Decimal):
    """A ConnectWise JSON number as `schemas.connectwise.CwNumber` holds it: the Decimal of an
    int, or of a float's shortest text (`repr`)."""


class CwTimestamp(datetime):
    """A ConnectWise timestamp (`schemas.connectwise.CwDatetime`, pydantic's lax `datetime`): the
    same value for the canonical spellings, naive when the text names no offset."""


class UtcTimestamp(datetime):
    """An aware timestamp normalised to UTC (`schemas.envelope.UtcDatetime`)."""


_CW_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
)
"""The timestamp spellings taken on the fast path: time of day and offset in range by the pattern
(the date by `fromisoformat`); any other spelling is pydantic's to judge."""
_CW_TIMES: dict[str, CwTimestamp] = {}
_UTC_TIMES: dict[str, UtcTimestamp] = {}
_FLOAT_LIMIT: Final = 2.0**53
"""Beyond it a JSON number may be an integer msgspec read as a float (pydantic keeps the int)."""


def _dec_hook(kind: type, value: Any) -> Any:
    """msgspec's hook for the custom types above: the pydantic conversion, canonical input only."""
    if kind is CwDecimal:
        if type(value) is int:
            return CwDecimal(value)
        if type(value) is float and -_FLOAT_LIMIT < value < _FLOAT_LIMIT:
            return CwDecimal(repr(value))
        raise _Decline
    if kind is CwTimestamp:
        found = _CW_TIMES.get(value) if type(value) is str else None
        if found is None:
            if type(value) is not str or _CW_TIME.fullmatch(value) is None:
                raise _Decline
            found = CwTimestamp.fromisoformat(value)  # ValueError (February 30th): declined
            if len(_CW_TIMES) >= _CACHE_MAX:
                _CW_TIMES.clear()
            _CW_TIMES[value] = found
        return found
    if kind is UtcTimestamp:
        utc = _UTC_TIMES.get(value) if type(value) is str else None
        if utc is None:
            if type(value) is not str or _CW_TIME.fullmatch(value) is None:
                raise _Decline
            parsed = UtcTimestamp.fromisoformat(value)
            if parsed.tzinfo is None:
                raise _Decline  # pydantic: timezone required
            utc = parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)
            if len(_UTC_TIMES) >= _CACHE_MAX:
                _UTC_TIMES.clear()
            _UTC_TIMES[value] = utc
        return utc
    raise _Decline


_NAMED: Final = msgspec.UNSET
"""Default of the `by_name_*` fields: a ConnectWise field sent under its Python name (which pydantic
takes too, `validate_by_name`) fails decoding, so pydantic decides."""
_ByName = msgspec.UnsetType


class CwInfoStruct(Struct, frozen=True):
    last_updated: CwTimestamp | None = msgspec.field(name="lastUpdated", default=None)
    updated_by: str | None = msgspec.field(name="updatedBy", default=None)
    by_name_last_updated: _ByName = msgspec.field(name="last_updated", default=_NAMED)
    by_name_updated_by: _ByName = msgspec.field(name="updated_by", default=_NAMED)


class CwReferenceStruct(Struct, frozen=True):
    id: int | None = None
    name: str | None = None
    identifier: str | None = None


class CwCurrencyStruct(CwReferenceStruct, frozen=True):
    currency_code: str | None = msgspec.field(name="currencyCode", default=None)
    number_of_decimals: int | None = msgspec.field(name="numberOfDecimals", default=None)
    by_name_currency_code: _ByName = msgspec.field(name="currency_code", default=_NAMED)
    by_name_number_of_decimals: _ByName = msgspec.field(name="number_of_decimals", default=_NAMED)


_AgreementStatus = Literal["Active", "Cancelled", "Expired", "Inactive"]


class CwAgreementStruct(Struct, frozen=True):
    id: int
    name: str
    type: CwReferenceStruct | None = None
    company: CwReferenceStruct | None = None
    parent_agreement: CwReferenceStruct | None = msgspec.field(name="parentAgreement", default=None)
    start_date: CwTimestamp | None = msgspec.field(name="startDate", default=None)
    end_date: CwTimestamp | None = msgspec.field(name="endDate", default=None)
    no_ending_date_flag: bool | None = msgspec.field(name="noEndingDateFlag", default=None)
    cancelled_flag: bool | None = msgspec.field(name="cancelledFlag", default=None)
    date_cancelled: CwTimestamp | None = msgspec.field(name="dateCancelled", default=None)
    agreement_status: _AgreementStatus | None = msgspec.field(name="agreementStatus", default=None)
    billing_cycle: CwReferenceStruct | None = msgspec.field(name="billingCycle", default=None)
    bill_amount: CwDecimal | None = msgspec.field(name="billAmount", default=None)
    bill_one_time_flag: bool | None = msgspec.field(name="billOneTimeFlag", default=None)
    one_time_flag: bool | None = msgspec.field(name="oneTimeFlag", default=None)
    currency: CwCurrencyStruct | None = None
    invoice_description: str | None = msgspec.field(name="invoiceDescription", default=None)
    info: CwInfoStruct | None = msgspec.field(name="_info", default=None)
    by_name_parent_agreement: _ByName = msgspec.field(name="parent_agreement", default=_NAMED)
    by_name_start_date: _ByName = msgspec.field(name="start_date", default=_NAMED)
    by_name_end_date: _ByName = msgspec.field(name="end_date", default=_NAMED)
    by_name_no_ending_date_flag: _ByName = msgspec.field(name="no_ending_date_flag", default=_NAMED)
    by_name_cancelled_flag: _ByName = msgspec.field(name="cancelled_flag", default=_NAMED)
    by_name_date_cancelled: _ByName = msgspec.field(name="date_cancelled", default=_NAMED)
    by_name_agreement_status: _ByName = msgspec.field(name="agreement_status", default=_NAMED)
    by_name_billing_cycle: _ByName = msgspec.field(name="billing_cycle", default=_NAMED)
    by_name_bill_amount: _ByName = msgspec.field(name="bill_amount", default=_NAMED)
    by_name_bill_one_time_flag: _ByName = msgspec.field(name="bill_one_time_flag", default=_NAMED)
    by_name_one_time_flag: _ByName = msgspec.field(name="one_time_flag", default=_NAMED)
    by_name_invoice_description: _ByName = msgspec.field(name="invoice_description", default=_NAMED)
    by_name_info: _ByName = msgspec.field(name="info", default=_NAMED)


class CwAdditionStruct(Struct, frozen=True):
    id: int
    product: CwReferenceStruct | None = None
    quantity: CwDecimal | None = None
    less_included: CwDecimal | None = msgspec.field(name="lessIncluded", default=None)
    unit_price: CwDecimal | None = msgspec.field(name="unitPrice", default=None)
    bill_customer: Literal["Billable", "DoNotBill", "NoCharge"] | None = msgspec.field(
        name="billCustomer", default=None
    )
    effective_date: CwTimestamp | None = msgspec.field(name="effectiveDate", default=None)
    cancelled_date: CwTimestamp | None = msgspec.field(name="cancelledDate", default=None)
    agreement_id: int | None = msgspec.field(name="agreementId", default=None)
    description: str | None = None
    invoice_description: str | None = msgspec.field(name="invoiceDescription", default=None)
    agreement_status: _AgreementStatus | None = msgspec.field(name="agreementStatus", default=None)
    info: CwInfoStruct | None = msgspec.field(name="_info", default=None)
    by_name_less_included: _ByName = msgspec.field(name="less_included", default=_NAMED)
    by_name_unit_price: _ByName = msgspec.field(name="unit_price", default=_NAMED)
    by_name_bill_customer: _ByName = msgspec.field(name="bill_customer", default=_NAMED)
    by_name_effective_date: _ByName = msgspec.field(name="effective_date", default=_NAMED)
    by_name_cancelled_date: _ByName = msgspec.field(name="cancelled_date", default=_NAMED)
    by_name_agreement_id: _ByName = msgspec.field(name="agreement_id", default=_NAMED)
    by_name_invoice_description: _ByName = msgspec.field(name="invoice_description", default=_NAMED)
    by_name_agreement_status: _ByName = msgspec.field(name="agreement_status", default=_NAMED)
    by_name_info: _ByName = msgspec.field(name="info", default=_NAMED)


class ObservedDataStruct(Struct, frozen=True, forbid_unknown_fields=True):
    tenant_id: str
    client_id: str
    agreement: CwAgreementStruct
    psa_last_updated: UtcTimestamp
    observed_at: UtcTimestamp
    psa: Literal["connectwise"] = "connectwise"
    additions: list[CwAdditionStruct] = msgspec.field(default_factory=list)
    time_zone: str = "UTC"
    default_currency: str = "USD"


OBSERVED_TYPE: Final = "psa.agreement.observed"


class ObservedEvent(Struct, frozen=True):
    """A `psa.agreement.observed` pydantic would accept, with its values (`time` as sent: valid)."""

    specversion: Literal["1.0"]
    type: Literal["psa.agreement.observed"]
    id: UUID
    source: Annotated[str, Meta(min_length=1, max_length=200)]
    time: str
    subject: str
    tenantid: str
    data: ObservedDataStruct
    datacontenttype: Literal["application/json"] = "application/json"
    correlationid: Annotated[str, Meta(max_length=200)] | None = None

    @property
    def key(self) -> bytes:
        """The Kafka key (`schemas.envelope.CloudEvent.key`)."""
        return self.subject.encode()


_DECODE_OBSERVED = msgspec.json.Decoder(ObservedEvent, dec_hook=_dec_hook).decode


def decode_observed(raw: bytes) -> ObservedEvent | None:
    """The event of a canonical `psa.agreement.observed` message, or None when the message is
    anything else (another type, not canonical, or invalid): then use `schemas.topics.parse`."""
    try:
        if not _shallow(raw):
            return None
        event = _DECODE_OBSERVED(raw)
        data = event.data
        _check_time(event.time)
        tenant = data.tenant_id
        if event.subject != _subject(tenant, data.client_id) or event.tenantid != tenant:
            return None
        currency = data.default_currency
        if currency not in _CURRENCIES:
            _match(_CURRENCY, currency)
            if len(_CURRENCIES) < _CACHE_MAX:
                _CURRENCIES.add(currency)
    except (_Decline, ValueError, TypeError, KeyError, AttributeError, RecursionError, msgspec.MsgspecError):
        return None
    return event


# -- encoding ------------------------------------------------------------------------------------


def _enc_hook(value: Any) -> Any:
    """The decoded timestamp and number types (`UtcTimestamp`, ...) as the plain values they are."""
    if isinstance(value, datetime):
        return datetime(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            value.tzinfo,
            fold=value.fold,
        )
    if isinstance(value, Decimal):
        return Decimal(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


_ENCODE = msgspec.json.Encoder(decimal_format="string", enc_hook=_enc_hook).encode
"""Decimal as its `str` (DecimalString), dates as `YYYY-MM-DD`, UTC datetimes with `Z`, strings
escaped as pydantic's serialiser escapes them (checked byte for byte by the property tests)."""


def new_event_id() -> str:
    """A random (version 4) UUID as text, without building a `uuid.UUID`."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def encode_mapped(
    fields: RecordFields,
    *,
    source: str,
    time: datetime,
    correlationid: str | None = None,
    event_id: str | None = None,
) -> bytes:
    """The Kafka value of one `contract.record.mapped` event (compact JSON).

    `time` must be timezone-aware (it is written in UTC); `event_id` defaults to a fresh UUID;
    `fields` are not checked again.
    """
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or new_event_id(),
        "source": source,
        "type": MAPPED_TYPE,
        "time": time.astimezone(UTC),
        "subject": f"{fields['tenant_id']}:{fields['client_id']}",
        "datacontenttype": "application/json",
        "tenantid": fields["tenant_id"],
    }
    if correlationid is not None:
        envelope["correlationid"] = correlationid
    envelope["data"] = fields
    return _ENCODE(envelope)


RETIRED_TYPE: Final[str] = ContractRecordRetired.model_fields["type"].default


def encode_retired(
    *,
    tenant_id: str,
    client_id: str,
    contract_key: str,
    kind: Literal["agreement", "addition"],
    agreement_id: int,
    addition_id: int | None,
    observed_at: datetime,
    evidence: str,
    source: str,
    time: datetime,
    correlationid: str | None = None,
    event_id: str | None = None,
) -> bytes:
    """The Kafka value of one `contract.record.retired` event (compact JSON), byte for byte what
    `ContractRecordRetired.build(ContractRetiredData(...), ...).to_bytes()` writes for the same event
    id and time. `time` and `observed_at` must be timezone-aware (written in UTC); nothing is checked."""
    record_source: dict[str, Any] = {"psa": "connectwise", "kind": kind, "agreement_id": agreement_id}
    if addition_id is not None:
        record_source["addition_id"] = addition_id
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or new_event_id(),
        "source": source,
        "type": RETIRED_TYPE,
        "time": time.astimezone(UTC),
        "subject": f"{tenant_id}:{client_id}",
        "datacontenttype": "application/json",
        "tenantid": tenant_id,
    }
    if correlationid is not None:
        envelope["correlationid"] = correlationid
    envelope["data"] = {
        "tenant_id": tenant_id,
        "client_id": client_id,
        "contract_key": contract_key,
        "source": record_source,
        "observed_at": observed_at.astimezone(UTC),
        "evidence": evidence,
    }
    return _ENCODE(envelope)
