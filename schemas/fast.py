"""Compiled (msgspec) codecs for the hot message `contract.record.mapped`, shared by the mapper
(encodes) and the writer (decodes). The pydantic models in `schemas.records` stay the definition
(JSON Schema, AsyncAPI, every other message); this module is a faster path that never disagrees
with them.

* `encode_mapped(fields, ...)` wraps a record's plain `data` (`RecordFields`: the wire's field
  order, absent values omitted, Decimal amounts, `date` dates, UTC `datetime` version) in the
  CloudEvents envelope and serialises it with msgspec. The bytes are exactly what
  `ContractRecordMapped.build(ContractRecordData(**fields), ...).to_bytes()` writes for the same
  event id and time. Nothing is validated: the caller (the mapper's rules) builds valid fields.
* `decode_mapped(raw)` decodes the *canonical* form of a `contract.record.mapped` message: the
  structure (required and unknown fields, JSON types, literals, lengths, the key pattern) is checked
  in C while decoding, the rest (patterns, dates, subject) in Python. It returns a
  `MappedRecord`, or None for anything it is not sure about - another type, a non-canonical
  spelling, an invalid message - and then `schemas.topics.parse` decides, with its usual reasons.

Contract (property tests in `tests/unit/writer/test_writer_fast_decode.py` and
`tests/unit/mapper/test_mapper_mapping_properties.py`): `decode_mapped` returns a
record only for messages pydantic accepts, with the values pydantic gives them, and it returns one
for every message `encode_mapped` or the pydantic model writes; `encode_mapped` is byte-identical to
the pydantic model's JSON. So the combined decoder (fast path, else pydantic) accepts and rejects
exactly what pydantic accepts and rejects.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, NamedTuple
from uuid import UUID

import msgspec
from msgspec import Meta, Struct

from schemas.envelope import CLIENT_ID_PATTERN, TENANT_ID_PATTERN
from schemas.psa_digest import DIGEST_PATTERN
from schemas.records import ContractRecordMapped

__all__ = ["MAPPED_TYPE", "MappedRecord", "RecordFields", "decode_mapped", "encode_mapped", "new_event_id"]

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
        return _decode(raw)
    except (_Decline, ValueError, TypeError, KeyError, AttributeError, msgspec.MsgspecError):
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


# -- encoding ------------------------------------------------------------------------------------

_ENCODE = msgspec.json.Encoder(decimal_format="string").encode
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
