"""A fast parse of `contract.record.mapped` messages straight into the row the writer stages (pure).

The writer's bulk input is contract records, and validating each with pydantic
(`schemas.topics.parse`) cost about 3/4 of its per-record CPU. `parse_mapped` decodes the bytes
with msgspec into plain structs (required/unknown fields, JSON types, literals, lengths and the
contract-key pattern checked in C while decoding), then checks the rest in Python, and accepts only
the *canonical* form the mapper produces: every constraint of `schemas.records.ContractRecordMapped`
is checked on the way (the same patterns, lengths, literals and value conversions). Anything it is not sure about it declines (returns None) and the caller falls
back to `schemas.topics.parse`, which then accepts or rejects it with its usual reasons.

Contract: when `parse_mapped(raw)` returns a record, `schemas.topics.parse(CONTRACT_RECORDS, raw)`
accepts `raw` and `services.writer.apply.staged_from_event` of its result is equal to it (checked by a property test
over generated valid and mutated messages, `tests/unit/writer/test_writer_fast_parse.py`).
So accept/reject decisions, dead-letter reasons and stored values never depend on which path ran.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
import orjson
from msgspec import Meta, Struct

from schemas.envelope import CLIENT_ID_PATTERN, TENANT_ID_PATTERN
from services.writer.apply import StagedRecord

__all__ = ["StagedRecord", "parse_mapped"]


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


def parse_mapped(raw: bytes) -> StagedRecord | None:
    """The staged record of a canonical `contract.record.mapped` message, or None when the message
    is anything else (another type, not canonical, or invalid): then use `schemas.topics.parse`."""
    try:
        return _parse(raw)
    except (_Decline, ValueError, TypeError, KeyError, AttributeError, msgspec.MsgspecError):
        return None


def _parse(raw: bytes) -> StagedRecord:
    doc = _DECODE(raw)  # msgspec.ValidationError / DecodeError (ValueErrors): declined by the caller
    data = doc.data
    source = data.source
    money = data.billing_cost
    # envelope
    event_id = doc.id
    _check_time(doc.time)
    tenant = data.tenant_id
    client = data.client_id
    if doc.subject != _subject(tenant, client) or doc.tenantid != tenant:
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
    key = data.contract_key
    start = data.start_date
    end = data.end_date
    explanation = data.explanation
    values = (
        key,
        tenant,
        client,
        "connectwise",
        source.kind,
        source.agreement_id,
        source.addition_id,
        version,
        data.parent_contract_key,
        data.status,
        amount,
        currency,
        data.billing_cycle,
        data.name,
        data.contract_type,
        None if start is None else _date(start),
        None if end is None else _date(end),
        data.description,
        data.category,
        orjson.dumps(explanation).decode() if explanation else "{}",
        event_id,
    )
    return StagedRecord(event_id, doc.correlationid, tenant, client, key, version, values)
