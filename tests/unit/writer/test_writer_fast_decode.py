"""The compiled decoder of contract records (`schemas.fast.decode_mapped`, as the writer stages its
result) agrees with the pydantic schema (property tests):
whatever it accepts, `schemas.topics.parse` accepts with the same values; whatever it declines is
decided by pydantic, so batches plan (events, dead letters, reasons) the same either way."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from writer_factories import as_incoming

from schemas.envelope import CLIENT_ID_PATTERN, TENANT_ID_PATTERN
from schemas.fast import decode_mapped, encode_mapped
from schemas.records import ContractRecordData, ContractRecordMapped, Money, RecordSource
from schemas.topics import CONTRACT_RECORDS, parse
from services.writer.apply import STAGE_COLUMNS, StagedRecord, staged_from_event, staged_from_record
from services.writer.handlers import DeadLetter, parse_message, plan_batch

_offsets = st.timedeltas(
    min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
)
_aware = st.builds(
    lambda naive, offset: naive.replace(tzinfo=timezone(timedelta(minutes=offset // timedelta(minutes=1)))),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)),
    _offsets,
)
_text = st.text(max_size=40)


@st.composite
def valid_records(draw: st.DrawFn) -> bytes:
    tenant = draw(st.from_regex(TENANT_ID_PATTERN, fullmatch=True).filter(lambda t: len(t) <= 20))
    client = draw(st.from_regex(CLIENT_ID_PATTERN, fullmatch=True).filter(lambda c: c != "*"))
    kind = draw(st.sampled_from(["agreement", "addition"]))
    agreement_id = draw(st.integers(1, 9_999_999_999))
    addition_id = draw(st.integers(1, 9_999_999_999)) if kind == "addition" else None
    item = addition_id if addition_id is not None else agreement_id
    data = ContractRecordData(
        tenant_id=tenant,
        client_id=client,
        contract_key=f"cw:{tenant}:{kind}:{item}",
        source=RecordSource(
            kind=kind, agreement_id=agreement_id, addition_id=addition_id, psa_last_updated=draw(_aware)
        ),
        parent_contract_key=f"cw:{tenant}:agreement:{agreement_id}" if addition_id is not None else None,
        name=draw(st.text(min_size=0, max_size=300)),
        contract_type=draw(st.text(max_size=200)),
        category=draw(st.sampled_from(["recurring", "fixed_cost"])),
        status=draw(st.sampled_from(["active", "pending", "inactive", "expired", "cancelled"])),
        billing_cost=Money(
            amount=draw(st.decimals(min_value=-(10**14), max_value=10**14, places=draw(st.integers(0, 6)))),
            currency=draw(st.from_regex(r"^[A-Z]{3}$", fullmatch=True)),
        ),
        billing_cycle=draw(st.sampled_from(["weekly", "monthly", "annual", "one_time", "semi_annual"])),
        start_date=draw(st.none() | st.dates(min_value=date(1900, 1, 1))),
        end_date=draw(st.none() | st.dates(min_value=date(1900, 1, 1))),
        description=draw(st.none() | st.text(max_size=200)),
        explanation=draw(st.dictionaries(_text, _text, max_size=3)),
    )
    event = ContractRecordMapped.build(
        data, source="contract-sync/mapper", correlationid=draw(st.none() | st.text(max_size=200))
    )
    return event.to_bytes()


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.append((*prefix, key))
            out.extend(_paths(value, (*prefix, key)))
    return out


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
    | st.sampled_from(
        [
            "",
            "1.0",
            "1.0\n",
            "application/json",
            "contract.record.mapped",
            "active",
            "ACTIVE",
            "connectwise",
            "agreement",
            "2026-01-01",
            "2026-02-30",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01 00:00:00+00:00",
            "2026-01-01T00:00:00.1234567Z",
            "2026-01-01T00:00:00-00:00",
            "20260101T000000Z",
            "1500.00",
            "1500.0000000",
            "1e3",
            " 1500",
            "-0.5",
            "\u0661\u0665\u0660\u0660",
            "usd",
            "USD",
            "cw:acme:agreement:1",
            "cw:acme:agreement:01",
            "cw:acme:agreement:1\n",
            "cw:ACME:agreement:1",
            "acme",
            "acme:100",
            "5B0C8A52-3F0E-4F57-9A51-8F1F1C7D2E10",
            "5b0c8a523f0e4f579a518f1f1c7d2e10",
            "{5b0c8a52-3f0e-4f57-9a51-8f1f1c7d2e10}",
            "x" * 301,
            "y" * 10_001,
        ]
    ),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=5,
)


@st.composite
def mutated_records(draw: st.DrawFn) -> bytes:
    doc = orjson.loads(draw(valid_records()))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if not isinstance(parent, dict):
            continue
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(_json_values)
        elif action == "delete":
            del parent[path[-1]]
        else:
            parent[draw(st.sampled_from(["extra", "x-ext", "psa", "addition_id", "time"]))] = draw(
                _json_values
            )
    encoded = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()  # stdlib: also ints beyond 64 bits
    return encoded + draw(st.sampled_from([b"", b"", b"", b" ", b"\n", b"x", b"}"]))


def parse_mapped(raw: bytes) -> StagedRecord | None:
    record = decode_mapped(raw)
    return None if record is None else staged_from_record(record)


def reference(raw: bytes) -> StagedRecord | str:
    """What pydantic makes of `raw`: the staged record, or why it is not one."""
    try:
        event = parse(CONTRACT_RECORDS, raw)
    except (ValidationError, ValueError):
        return "rejected"
    return staged_from_event(event) if isinstance(event, ContractRecordMapped) else f"other:{event.type}"


def _without_id(event: Any) -> Any:
    return event._replace(id=None, values=event.values[:-1]) if isinstance(event, StagedRecord) else event


_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(valid_records())
def test_every_canonical_record_takes_the_fast_path_with_the_validated_values(raw: bytes) -> None:
    fast = parse_mapped(raw)
    assert fast is not None
    assert fast == reference(raw)


@_settings
@given(valid_records())
def test_the_compiled_encoder_writes_byte_for_byte_what_the_pydantic_model_writes(raw: bytes) -> None:
    event = parse(CONTRACT_RECORDS, raw)
    assert isinstance(event, ContractRecordMapped)
    fields = event.data.model_dump(exclude_none=True)
    encoded = encode_mapped(
        fields,
        source=event.source,
        time=event.time,
        correlationid=event.correlationid,
        event_id=str(event.id),
    )
    assert encoded == event.to_bytes() == raw


@_settings
@given(mutated_records())
def test_whatever_the_fast_path_accepts_pydantic_accepts_with_equal_values(raw: bytes) -> None:
    fast = parse_mapped(raw)
    if fast is not None:
        assert reference(raw) == fast


@_settings
@given(st.one_of(valid_records(), mutated_records()))
def test_a_batch_plans_the_same_events_and_dead_letter_reasons_as_pydantic_alone(raw: bytes) -> None:
    message = as_incoming(None, CONTRACT_RECORDS, value=raw)
    plan = plan_batch([message])
    expected = parse_message(message, CONTRACT_RECORDS)
    if isinstance(expected, DeadLetter):
        assert [(d.reason, d.error) for d in plan.dead_letters] == [(expected.reason, expected.error)]
        assert plan.events == []
    elif isinstance(expected, ContractRecordMapped):
        staged = staged_from_event(expected)
        if staged.contract_key.startswith(f"cw:{staged.tenant_id}:"):
            # (a message without an `id` gets a fresh one from pydantic on each parse)
            assert [_without_id(a.event) for a in plan.events] == [_without_id(staged)]
        else:
            assert [d.reason for d in plan.dead_letters] == ["cross_tenant"]
    else:
        assert [a.event for a in plan.events] == [expected]


def test_values_are_typed_as_the_database_expects() -> None:
    raw = _canonical_example()
    fast = parse_mapped(raw)
    assert fast is not None
    assert fast.psa_last_updated == datetime(2026, 1, 1, 8, 0, 0, 500_000, tzinfo=UTC)
    amount = fast.values[STAGE_COLUMNS.index("billing_amount")]
    assert amount == Decimal("1500.00") and str(amount) == "1500.00"
    assert fast.values[STAGE_COLUMNS.index("start_date")] == date(2026, 1, 1)
    assert fast == reference(raw)


def test_an_upper_case_or_unhyphenated_event_id_takes_the_fast_path_with_the_same_uuid() -> None:
    raw = _canonical_example()
    ident = orjson.loads(raw)["id"]
    for spelling in (ident.upper(), ident.replace("-", "")):
        variant = raw.replace(ident.encode(), spelling.encode())
        fast = parse_mapped(variant)
        assert fast is not None and str(fast.id) == ident
        assert fast == reference(variant)


def test_a_contract_key_with_a_trailing_newline_is_left_to_pydantic_which_rejects_it() -> None:
    raw = _canonical_example().replace(b':agreement:7"', b':agreement:7\\n"', 1)
    assert parse_mapped(raw) is None
    assert reference(raw) == "rejected"


def _canonical_example() -> bytes:
    return (
        b'{"specversion":"1.0","id":"5b0c8a52-3f0e-4f57-9a51-8f1f1c7d2e10","source":"m","type":'
        b'"contract.record.mapped","time":"2026-01-01T10:00:00+02:00","subject":"acme:1","tenantid":"acme",'
        b'"data":{"tenant_id":"acme","client_id":"1","contract_key":"cw:acme:agreement:7","source":{"kind":'
        b'"agreement","agreement_id":7,"psa_last_updated":"2026-01-01T10:00:00.5+02:00"},"name":"n",'
        b'"contract_type":"t","category":"recurring","status":"active","billing_cost":{"amount":"1500.00",'
        b'"currency":"USD"},"billing_cycle":"monthly","start_date":"2026-01-01"}}'
    )


def test_nesting_deeper_than_pydantic_allows_is_declined_to_pydantic() -> None:
    """msgspec reads nesting pydantic's JSON parser refuses (~255-1,000 levels) and fails on deeper
    with RecursionError: either way the record is declined and pydantic rejects it."""
    record = orjson.loads(_canonical_example())
    for depth in (300, 600, 4_000):
        record["x-ext"] = "@"
        raw = orjson.dumps(record).replace(b'"@"', b"[" * depth + b"]" * depth)
        assert decode_mapped(raw) is None, depth
        assert reference(raw) == "rejected"
