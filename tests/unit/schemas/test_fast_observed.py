"""The compiled decoder of `psa.agreement.observed` (`schemas.fast.decode_observed`, used by the mapper
and the writer) agrees with the pydantic schema (property tests): every message the poller's model
writes takes the fast path; whatever the fast path accepts, `schemas.topics.parse` accepts with the
same values; whatever it declines is pydantic's to decide. The compiled encoder of
`contract.record.retired` writes byte for byte what the pydantic model writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.fast import decode_observed, encode_mapped, encode_retired
from schemas.psa import AgreementObserved
from schemas.records import ContractRecordRetired, ContractRetiredData, RetiredSource
from schemas.topics import CONTRACT_RECORDS, PSA_AGREEMENTS, parse
from services.mapper.mapping import MappingError, map_items_fields
from services.writer.apply import catalog_rows

_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
_moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1))


def _stamp(moment: datetime, form: int, offset: timezone) -> str:
    """A timestamp in one of the spellings ConnectWise and the poller use (or a naive one)."""
    if form == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if form == 1:
        return moment.replace(tzinfo=offset).isoformat()
    if form == 2:
        return moment.replace(tzinfo=UTC).isoformat()
    return moment.isoformat()  # naive


_cw_times = st.builds(_stamp, _moments, st.integers(0, 3), _offsets)
_aware_times = st.builds(_stamp, _moments, st.integers(0, 2), _offsets)
_numbers = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
    st.decimals(min_value=-(10**9), max_value=10**9, places=3).map(float),
)
_texts = st.text(max_size=30)
_extra_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_texts, children, max_size=3),
    max_leaves=6,
)


def _drop(doc: dict[str, Any], drop_none: bool) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v is not None or not drop_none}


@st.composite
def references(draw: st.DrawFn) -> dict[str, Any]:
    return _drop(
        {
            "id": draw(st.none() | st.integers(1, 10**6)),
            "name": draw(st.none() | _texts),
            "identifier": draw(st.none() | _texts),
            "_info": draw(st.none() | st.just({"type_href": "https://cw.example/x"})),
        },
        draw(st.booleans()),
    )


@st.composite
def infos(draw: st.DrawFn) -> dict[str, Any]:
    return _drop(
        {"lastUpdated": draw(st.none() | _cw_times), "updatedBy": draw(st.none() | _texts)},
        draw(st.booleans()),
    )


@st.composite
def agreements(draw: st.DrawFn) -> dict[str, Any]:
    currency = draw(
        st.none()
        | st.builds(
            lambda code, decimals: _drop({"id": 7, "currencyCode": code, "numberOfDecimals": decimals}, True),
            st.none() | st.sampled_from(["USD", "EUR", "JPY", "usd", ""]),
            st.none() | st.integers(0, 8),
        )
    )
    doc = {
        "id": draw(st.integers(-5, 3_000_000_000)),
        "name": draw(_texts),
        "type": draw(st.none() | references()),
        "company": draw(st.none() | references()),
        "parentAgreement": draw(st.none() | references()),
        "startDate": draw(st.none() | _cw_times),
        "endDate": draw(st.none() | _cw_times),
        "noEndingDateFlag": draw(st.none() | st.booleans()),
        "cancelledFlag": draw(st.none() | st.booleans()),
        "dateCancelled": draw(st.none() | _cw_times),
        "agreementStatus": draw(st.none() | st.sampled_from(["Active", "Cancelled", "Expired", "Inactive"])),
        "billingCycle": draw(st.none() | references()),
        "billAmount": draw(st.none() | _numbers),
        "billOneTimeFlag": draw(st.none() | st.booleans()),
        "oneTimeFlag": draw(st.none() | st.booleans()),
        "currency": currency,
        "invoiceDescription": draw(st.none() | _texts),
        "_info": draw(st.none() | infos()),
        "customFields": draw(st.none() | st.lists(_extra_values, max_size=2)),
        "billTime": draw(st.none() | _extra_values),
    }
    return _drop(doc, draw(st.booleans()))


@st.composite
def additions(draw: st.DrawFn) -> dict[str, Any]:
    doc = {
        "id": draw(st.integers(1, 3_000_000_000)),
        "product": draw(st.none() | references()),
        "quantity": draw(st.none() | _numbers),
        "lessIncluded": draw(st.none() | _numbers),
        "unitPrice": draw(st.none() | _numbers),
        "billCustomer": draw(st.none() | st.sampled_from(["Billable", "DoNotBill", "NoCharge"])),
        "effectiveDate": draw(st.none() | _cw_times),
        "cancelledDate": draw(st.none() | _cw_times),
        "agreementId": draw(st.none() | st.integers(1, 10**6)),
        "description": draw(st.none() | _texts),
        "invoiceDescription": draw(st.none() | _texts),
        "agreementStatus": draw(st.none() | st.sampled_from(["Active", "Cancelled", "Expired", "Inactive"])),
        "_info": draw(st.none() | infos()),
        "uom": draw(st.none() | _extra_values),
    }
    return _drop(doc, draw(st.booleans()))


@st.composite
def observed_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid `psa.agreement.observed` as JSON values, in the spellings pydantic accepts."""
    tenant = draw(st.sampled_from(["acme", "bench", "t-1"]))
    client = draw(st.sampled_from(["250", "C.9_x", "7"]))
    data: dict[str, Any] = {
        "tenant_id": tenant,
        "client_id": client,
        "agreement": draw(agreements()),
        "additions": draw(st.lists(additions(), max_size=3)),
        "psa_last_updated": draw(_aware_times),
        "observed_at": draw(_aware_times),
    }
    if draw(st.booleans()):
        data["time_zone"] = draw(st.sampled_from(["UTC", "Europe/Berlin", "Nowhere/Else"]))
    if draw(st.booleans()):
        data["default_currency"] = draw(st.sampled_from(["USD", "EUR"]))
    if draw(st.booleans()):
        data["psa"] = "connectwise"
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(draw(st.uuids())),
        "source": "contract-sync/poller",
        "type": "psa.agreement.observed",
        "time": draw(_aware_times),
        "subject": f"{tenant}:{client}",
        "tenantid": tenant,
        "data": data,
    }
    if draw(st.booleans()):
        doc["datacontenttype"] = "application/json"
    if draw(st.booleans()):
        doc["correlationid"] = draw(st.text(max_size=20))
    return doc


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        out.append((*prefix, key))
        out.extend(_paths(value, (*prefix, key)))
    return out


_odd_values = st.one_of(
    _extra_values,
    st.sampled_from(
        [
            "1500.0",
            "12",
            1.0,
            5.5,
            True,
            "true",
            1e300,
            2**64,
            2**53 + 1,
            -0.0,
            "2026-01-01",
            "2026-01-01 00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00.1234567Z",
            "2026-01-01t00:00:00z",
            "1700000000",
            1700000000,
            "Active ",
            "billable",
            "usd",
            "acme:999",
            "5B0C8A52-3F0E-4F57-9A51-8F1F1C7D2E10",
            "{5b0c8a52-3f0e-4f57-9a51-8f1f1c7d2e10}",
            {},
            [],
        ]
    ),
)
_python_names = [
    "bill_amount",
    "start_date",
    "end_date",
    "no_ending_date_flag",
    "cancelled_flag",
    "agreement_status",
    "billing_cycle",
    "bill_one_time_flag",
    "invoice_description",
    "info",
    "unit_price",
    "less_included",
    "bill_customer",
    "effective_date",
    "cancelled_date",
    "agreement_id",
    "last_updated",
    "currency_code",
    "number_of_decimals",
]


@st.composite
def mutated_documents(draw: st.DrawFn) -> bytes:
    doc = draw(observed_documents())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        parent: Any = doc
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(_odd_values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            name = draw(st.sampled_from([*_python_names, "extra", "x-ext", "psa", "time", "type"]))
            parent[name] = draw(_odd_values)
    encoded = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()  # stdlib: ints beyond 64 bits
    return encoded + draw(st.sampled_from([b"", b"", b" ", b"\n", b"x", b"}"]))


def _view(value: Any) -> Any:
    """Every attribute the services read of an observed event (`schemas.fast.ObservedMessage`), as
    plain values that keep their spelling (so Decimal('1.0') != Decimal('1'), offsets compared)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, datetime):
        return ("datetime", value.isoformat(), value.utcoffset())
    if isinstance(value, Decimal):
        return ("decimal", str(value))
    if isinstance(value, UUID):
        return ("uuid", str(value))
    if isinstance(value, bytes):
        return value
    if isinstance(value, list):
        return [_view(v) for v in value]
    shape = _SHAPES[type(value).__name__.removesuffix("Struct")]
    return {name: _view(getattr(value, name)) for name in _FIELDS[shape]}


_SHAPES = {
    "AgreementObserved": "event", "ObservedEvent": "event", "AgreementObservedData": "data",
    "ObservedData": "data", "CwAgreement": "agreement", "CwAddition": "addition",
    "CwCurrency": "currency", "CwReference": "reference", "CwInfo": "info",
}  # fmt: skip
_FIELDS = {
    "event": ("specversion", "id", "source", "type", "subject", "tenantid", "key", "correlationid",
              "datacontenttype", "data"),
    "data": ("tenant_id", "client_id", "psa", "agreement", "additions", "psa_last_updated", "observed_at",
             "time_zone", "default_currency"),
    "agreement": ("id", "name", "type", "company", "parent_agreement", "start_date", "end_date",
                  "no_ending_date_flag", "cancelled_flag", "date_cancelled", "agreement_status",
                  "billing_cycle", "bill_amount", "bill_one_time_flag", "one_time_flag", "currency",
                  "invoice_description", "info"),
    "addition": ("id", "product", "quantity", "less_included", "unit_price", "bill_customer",
                 "effective_date", "cancelled_date", "agreement_id", "description", "invoice_description",
                 "agreement_status", "info"),
    "currency": ("id", "name", "identifier", "currency_code", "number_of_decimals"),
    "reference": ("id", "name", "identifier"),
    "info": ("last_updated", "updated_by"),
}  # fmt: skip


def reference(raw: bytes) -> Any:
    """What pydantic makes of `raw`: the view of the observed event, or why it is not one."""
    try:
        event = parse(PSA_AGREEMENTS, raw)
    except (ValidationError, ValueError):
        return "rejected"
    return _view(event) if isinstance(event, AgreementObserved) else f"other:{event.type}"


_NOW = datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)


def _mapped(event: Any) -> list[Any]:
    """The records the mapping rules make of `event`, as the bytes the mapper produces."""
    data = event.data
    results = map_items_fields(data, agreement=True, addition_ids=[a.id for a in data.additions])
    return [
        (r.code, r.kind, r.item_id)
        if isinstance(r, MappingError)
        else encode_mapped(r, source="m", time=_NOW, event_id="5b0c8a52-3f0e-4f57-9a51-8f1f1c7d2e10")
        for r in results
    ]


@_settings
@given(observed_documents())
def test_every_observed_message_the_poller_writes_takes_the_fast_path_with_pydantics_values(
    doc: dict[str, Any],
) -> None:
    try:
        raw = AgreementObserved.model_validate(doc).to_bytes()  # what the poller produces
    except ValidationError:
        return  # e.g. an agreement id the generator made too large for the contract
    fast = decode_observed(raw)
    assert fast is not None
    assert _view(fast) == reference(raw)
    model = parse(PSA_AGREEMENTS, raw)
    assert isinstance(model, AgreementObserved)
    assert _mapped(fast) == _mapped(model)  # the mapper's rules give the same records
    assert catalog_rows(fast) == catalog_rows(model)  # the writer, the same catalog rows


@_settings
@given(observed_documents())
def test_whatever_valid_spelling_the_fast_path_takes_pydantic_takes_with_equal_values(
    doc: dict[str, Any],
) -> None:
    raw = json.dumps(doc).encode()
    fast = decode_observed(raw)
    expected = reference(raw)
    if fast is not None:
        assert _view(fast) == expected


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
@example(b'{"specversion":"1.0"}')
@example(b"[]")
def test_the_fast_path_never_accepts_what_pydantic_rejects_nor_changes_a_value(raw: bytes) -> None:
    fast = decode_observed(raw)
    if fast is not None:
        assert _view(fast) == reference(raw)


def _valid_raw() -> dict[str, Any]:
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": "5b0c8a52-3f0e-4f57-9a51-8f1f1c7d2e10",
        "source": "contract-sync/poller",
        "type": "psa.agreement.observed",
        "time": "2026-01-01T00:00:00Z",
        "subject": "acme:250",
        "tenantid": "acme",
        "data": {
            "tenant_id": "acme",
            "client_id": "250",
            "agreement": {"id": 1, "name": "A", "billAmount": 10.5, "x": None},
            "additions": [{"id": 2, "quantity": 3, "unitPrice": 1.25}],
            "psa_last_updated": "2026-01-01T00:00:00Z",
            "observed_at": "2026-01-01T00:00:00+01:00",
        },
    }
    return doc


def _nested(depth: int) -> bytes:
    doc = _valid_raw()
    doc["data"]["agreement"]["x"] = "@"
    return json.dumps(doc).encode().replace(b'"@"', b"[" * depth + b"]" * depth)


def test_nesting_pydantic_refuses_is_declined_even_where_msgspec_would_go_deeper() -> None:
    for depth in (10, 150, 260, 600, 4_000, 100_000):
        raw = _nested(depth)
        fast = decode_observed(raw)
        if reference(raw) == "rejected":
            assert fast is None, depth
    assert decode_observed(_nested(10)) is not None


def test_a_connectwise_field_under_its_python_name_is_left_to_pydantic() -> None:
    doc = _valid_raw()
    del doc["data"]["agreement"]["billAmount"]
    doc["data"]["agreement"]["bill_amount"] = 99.0  # pydantic validates by name too
    raw = json.dumps(doc).encode()
    assert decode_observed(raw) is None
    model = parse(PSA_AGREEMENTS, raw)
    assert isinstance(model, AgreementObserved)
    assert str(model.data.agreement.bill_amount) == "99.0"


def test_numbers_are_the_decimals_pydantic_makes() -> None:
    raw = json.dumps(_valid_raw()).encode()
    fast = decode_observed(raw)
    assert fast is not None
    assert _view(fast) == reference(raw)
    assert str(fast.data.agreement.bill_amount) == "10.5"
    assert str(fast.data.additions[0].quantity) == "3"


@st.composite
def retired_events(draw: st.DrawFn) -> ContractRecordRetired:
    kind = draw(st.sampled_from(["agreement", "addition"]))
    agreement_id = draw(st.integers(1, 2_147_483_647))
    addition_id = draw(st.integers(1, 2_147_483_647)) if kind == "addition" else None
    tenant = draw(st.sampled_from(["acme", "t_2"]))
    data = ContractRetiredData(
        tenant_id=tenant,
        client_id=draw(st.sampled_from(["250", "C.9_x"])),
        contract_key=f"cw:{tenant}:{kind}:{addition_id or agreement_id}",
        source=RetiredSource(kind=kind, agreement_id=agreement_id, addition_id=addition_id),
        observed_at=draw(
            st.datetimes(timezones=st.just(UTC))
            | st.builds(lambda m, o: m.replace(tzinfo=o), _moments, _offsets)
        ),
        evidence=draw(st.text(max_size=500)),
    )
    return ContractRecordRetired.build(
        data,
        source="contract-sync/mapper",
        correlationid=draw(st.none() | st.text(max_size=50)),
        time=draw(st.builds(lambda m, o: m.replace(tzinfo=o), _moments, _offsets)),
    )


@_settings
@given(retired_events())
def test_the_compiled_retired_encoder_writes_byte_for_byte_what_the_pydantic_model_writes(
    event: ContractRecordRetired,
) -> None:
    data = event.data
    raw = encode_retired(
        tenant_id=data.tenant_id,
        client_id=data.client_id,
        contract_key=data.contract_key,
        kind=data.source.kind,
        agreement_id=data.source.agreement_id,
        addition_id=data.source.addition_id,
        observed_at=data.observed_at,
        evidence=data.evidence,
        source=event.source,
        time=event.time,
        correlationid=event.correlationid,
        event_id=str(event.id),
    )
    assert raw == event.to_bytes()
    assert parse(CONTRACT_RECORDS, raw) == event
