"""A fast parse of `contract.record.mapped` messages straight into the row the writer stages (pure).

The writer's bulk input is contract records, and validating each with pydantic
(`schemas.topics.parse`) cost about 3/4 of its per-record CPU. `parse_mapped` reads the bytes
with orjson and accepts only the *canonical* form the mapper produces, checking every constraint
of `schemas.records.ContractRecordMapped` on the way (the same patterns, lengths, literals and
value conversions). Anything it is not sure about it declines (returns None) and the caller falls
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
from typing import Any
from uuid import UUID, SafeUUID

import orjson

from schemas.envelope import CLIENT_ID_PATTERN, TENANT_ID_PATTERN
from services.writer.apply import MAPPED_TYPE, StagedRecord

__all__ = ["StagedRecord", "parse_mapped"]


# The constraints of schemas.records / schemas.envelope, as compiled patterns used with fullmatch
# (pydantic's patterns are anchored with ^...$ in the Rust engine: no trailing-newline match).
_TENANT = re.compile(TENANT_ID_PATTERN)
_CLIENT = re.compile(CLIENT_ID_PATTERN)
_KEY = re.compile(r"^cw:[a-z0-9][a-z0-9_-]{0,62}:(agreement|addition):[1-9]\d{0,9}$")
_DECIMAL = re.compile(r"^-?\d{1,15}(\.\d{1,6})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

_STATUSES = frozenset({"active", "pending", "inactive", "expired", "cancelled"})
_CYCLES = frozenset(
    {"weekly", "bi_weekly", "monthly", "bi_monthly", "quarterly", "semi_annual", "annual", "one_time"}
)
_CATEGORIES = frozenset({"recurring", "fixed_cost"})
_KINDS = frozenset({"agreement", "addition"})
_DATA_FIELDS = frozenset(
    {
        "tenant_id", "client_id", "contract_key", "source", "parent_contract_key", "name", "contract_type",
        "category", "status", "billing_cost", "billing_cycle", "start_date", "end_date", "description",
        "explanation",
    }
)  # fmt: skip
_DATA_REQUIRED = frozenset(
    {
        "tenant_id", "client_id", "contract_key", "source", "name", "contract_type", "category", "status",
        "billing_cost", "billing_cycle",
    }
)  # fmt: skip
_SOURCE_FIELDS = frozenset({"psa", "kind", "agreement_id", "addition_id", "psa_last_updated"})
_MONEY_FIELDS = frozenset({"amount", "currency"})


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
_new_uuid = object.__new__
_set_slot = object.__setattr__
_UNKNOWN = SafeUUID.unknown  # (an enum member looked up once: each lookup goes through a descriptor)
_AMOUNTS: dict[Any, Decimal] = {}
"""Amount texts already validated -> their Decimal (prices repeat; Decimals are immutable)."""
_DATES: dict[Any, date] = {}
"""Date texts already validated -> their date."""
_SHAPES: set[tuple[Any, ...]] = set()
"""Key sequences of `data` (with those of its `source` and `billing_cost`) already checked against
the schema's fields: the mapper writes the same few shapes, so each is checked once."""


def _uuid(value: Any) -> UUID:
    """`UUID(value)` for the canonical lower-case hyphenated form (checked by the pattern), without
    `UUID.__init__`'s general parsing (a third of the fast path's time)."""
    _match(_UUID, value)
    ident = _new_uuid(UUID)
    _set_slot(ident, "int", int(value.replace("-", ""), 16))
    _set_slot(ident, "is_safe", _UNKNOWN)
    return ident


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
    except (_Decline, ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError):
        return None


def _parse(raw: bytes) -> StagedRecord:
    doc = orjson.loads(raw)
    if type(doc) is not dict or doc.get("type") != MAPPED_TYPE:
        raise _Decline
    data = doc["data"]
    if type(data) is not dict:
        raise _Decline
    source = data.get("source")
    money = data.get("billing_cost")
    if type(source) is not dict or type(money) is not dict:
        raise _Decline
    shape = (*data, None, *source, None, *money)
    if shape not in _SHAPES:
        keys = data.keys()
        if (
            not keys <= _DATA_FIELDS
            or not keys >= _DATA_REQUIRED
            or not source.keys() <= _SOURCE_FIELDS
            or money.keys() != _MONEY_FIELDS
        ):
            raise _Decline
        if len(_SHAPES) >= _CACHE_MAX:
            _SHAPES.clear()
        _SHAPES.add(shape)
    # envelope
    if doc.get("specversion", "1.0") != "1.0" or doc.get("datacontenttype", "application/json") != (
        "application/json"
    ):
        raise _Decline
    event_id = _uuid(doc["id"])
    origin = doc["source"]
    if type(origin) is not str or not 1 <= len(origin) <= 200:
        raise _Decline
    _check_time(doc["time"])
    correlation = doc.get("correlationid")
    if correlation is not None:
        _str(correlation, 200)
    tenant = data["tenant_id"]
    client = data["client_id"]
    if doc["subject"] != _subject(tenant, client) or doc["tenantid"] != tenant:
        raise _Decline
    # payload
    key = _match(_KEY, data["contract_key"])
    parent = data.get("parent_contract_key")
    if parent is not None:
        _match(_KEY, parent)
    if source.get("psa", "connectwise") != "connectwise":
        raise _Decline
    kind = source["kind"]
    agreement_id = source["agreement_id"]
    addition_id = source.get("addition_id")
    if (
        kind not in _KINDS
        or type(agreement_id) is not int
        or (addition_id is not None and type(addition_id) is not int)
    ):
        raise _Decline
    version = _datetime(source["psa_last_updated"])
    status, cycle, category = data["status"], data["billing_cycle"], data["category"]
    if status not in _STATUSES or cycle not in _CYCLES or category not in _CATEGORIES:
        raise _Decline
    amount_text = money["amount"]
    amount = _AMOUNTS.get(amount_text)
    if amount is None:
        amount = Decimal(_match(_DECIMAL, amount_text))
        if len(_AMOUNTS) >= _CACHE_MAX:
            _AMOUNTS.clear()
        _AMOUNTS[amount_text] = amount
    currency = money["currency"]
    if currency not in _CURRENCIES:
        _match(_CURRENCY, currency)
        if len(_CURRENCIES) < _CACHE_MAX:
            _CURRENCIES.add(currency)
    explanation = data.get("explanation", {})
    if type(explanation) is not dict:
        raise _Decline
    for text in explanation.values():
        if type(text) is not str:
            raise _Decline
    name = data["name"]
    contract_type = data["contract_type"]
    description = data.get("description")
    if (
        type(name) is not str
        or len(name) > 300
        or type(contract_type) is not str
        or len(contract_type) > 200
        or (description is not None and (type(description) is not str or len(description) > 10_000))
    ):
        raise _Decline
    start = data.get("start_date")
    end = data.get("end_date")
    values = (
        key,
        tenant,
        client,
        "connectwise",
        kind,
        agreement_id,
        addition_id,
        version,
        parent,
        status,
        amount,
        currency,
        cycle,
        name,
        contract_type,
        None if start is None else _date(start),
        None if end is None else _date(end),
        description,
        category,
        orjson.dumps(explanation).decode() if explanation else "{}",
        event_id,
    )
    return StagedRecord(event_id, correlation, tenant, client, key, version, values)
