"""Property tests of the pure mapping: total, deterministic, Decimal-only, non-negative billable cost."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.fast import decode_mapped, encode_mapped
from schemas.psa import AgreementObservedData
from schemas.records import ContractRecordData, ContractRecordMapped
from schemas.topics import CONTRACT_RECORDS, parse
from services.mapper.mapping import MappingError, map_items, map_items_fields

CYCLE_NAMES = ["Monthly", "Quarterly", "SemiAnnual", "Semi-Annual", "Yearly", "Weekly", "BiWeekly", "BiMonthly",
               "NotRecurring", "daily", ""]  # fmt: skip
ZONES = ["UTC", "America/New_York", "Asia/Tokyo", "Europe/Berlin", "Pacific/Kiritimati", "Pacific/Pago_Pago"]
CURRENCIES = ["USD", "EUR", "JPY", "KWD", "BHD", "GBP", None]

timestamps = st.datetimes(
    min_value=datetime(2015, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)
money = st.decimals(min_value=-100_000, max_value=1_000_000, places=4, allow_nan=False, allow_infinity=False)
quantity = st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False, allow_infinity=False)


def _cw_time(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def _drop_none(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v is not None}


@st.composite
def additions(draw: st.DrawFn, agreement_id: int) -> dict[str, Any]:
    return _drop_none(
        {
            "id": draw(st.integers(1, 2_000_000_000)),
            "agreementId": agreement_id,
            "quantity": float(draw(quantity)),
            "lessIncluded": draw(st.one_of(st.none(), quantity.map(float))),
            "unitPrice": draw(st.one_of(st.none(), money.map(float))),
            "billCustomer": draw(st.sampled_from(["Billable", "DoNotBill", "NoCharge"])),
            "effectiveDate": _cw_time(draw(st.one_of(st.none(), timestamps))),
            "cancelledDate": _cw_time(draw(st.one_of(st.none(), timestamps))),
            "description": draw(st.one_of(st.none(), st.text(max_size=40))),
            "product": {"id": 1, "identifier": draw(st.text(min_size=0, max_size=20))},
        }
    )


@st.composite
def snapshots(draw: st.DrawFn) -> AgreementObservedData:
    agreement_id = draw(st.integers(1, 2_000_000_000))
    currency = draw(st.sampled_from(CURRENCIES))
    agreement = _drop_none(
        {
            "id": agreement_id,
            "name": draw(st.text(max_size=120)),
            "type": {"id": 1, "name": draw(st.text(max_size=50))},
            "startDate": _cw_time(draw(st.one_of(st.none(), timestamps))),
            "endDate": _cw_time(draw(st.one_of(st.none(), timestamps))),
            "noEndingDateFlag": draw(st.one_of(st.none(), st.booleans())),
            "cancelledFlag": draw(st.one_of(st.none(), st.booleans())),
            "agreementStatus": draw(
                st.one_of(st.none(), st.sampled_from(["Active", "Cancelled", "Expired", "Inactive"]))
            ),
            "billingCycle": {"id": 1, "name": draw(st.sampled_from(CYCLE_NAMES))},
            "billOneTimeFlag": draw(st.one_of(st.none(), st.booleans())),
            "billAmount": draw(st.one_of(st.none(), money.map(float))),
            "currency": {"currencyCode": currency} if currency else None,
            "parentAgreement": draw(
                st.one_of(st.none(), st.just({}), st.builds(lambda i: {"id": i}, st.integers(1, 10**6)))
            ),
        }
    )
    items = draw(st.lists(additions(agreement_id), max_size=4, unique_by=lambda a: a["id"]))
    observed = draw(timestamps)
    return AgreementObservedData.model_validate(
        {
            "tenant_id": "acme",
            "client_id": "250",
            "agreement": agreement,
            "additions": items,
            "psa_last_updated": (observed - timedelta(hours=1)).isoformat(),
            "observed_at": observed.isoformat(),
            "time_zone": draw(st.sampled_from(ZONES)),
            "default_currency": draw(st.sampled_from(["USD", "EUR", "JPY"])),
        }
    )


def _all(data: AgreementObservedData) -> list[Any]:
    return map_items(data, agreement=True, addition_ids=[a.id for a in data.additions])


@settings(max_examples=150, deadline=None)
@given(snapshots())
def test_mapping_is_total_over_valid_snapshots(data: AgreementObservedData) -> None:
    results = _all(data)  # never raises: every failure is a MappingError value
    assert len(results) == 1 + len(data.additions)
    for result in results:
        if isinstance(result, MappingError):
            assert result.code and result.message
        else:
            assert result.contract_key.startswith("cw:acme:")


@settings(max_examples=150, deadline=None)
@given(snapshots())
def test_mapping_is_deterministic(data: AgreementObservedData) -> None:
    def dump(results: list[Any]) -> list[Any]:
        return [(r.code, r.item_id) if isinstance(r, MappingError) else r.model_dump_json() for r in results]

    again = AgreementObservedData.model_validate_json(data.model_dump_json(by_alias=True))
    assert dump(_all(data)) == dump(_all(again))


def _no_floats(value: Any) -> bool:
    if isinstance(value, float):
        return False
    if isinstance(value, dict):
        return all(_no_floats(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_no_floats(v) for v in value)
    return True


@settings(max_examples=100, deadline=None)
@given(snapshots())
def test_records_never_contain_a_float(data: AgreementObservedData) -> None:
    for result in _all(data):
        if isinstance(result, MappingError):
            continue
        assert isinstance(result.billing_cost.amount, Decimal)
        assert _no_floats(result.model_dump())
        wire = json.loads(result.model_dump_json())
        assert isinstance(wire["billing_cost"]["amount"], str)


@settings(max_examples=100, deadline=None)
@given(
    snapshots(),
    quantity,
    st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False, allow_infinity=False),
    st.decimals(min_value=0, max_value=100_000, places=4, allow_nan=False, allow_infinity=False),
)
def test_billable_addition_cost_is_never_negative_when_quantity_covers_included(
    data: AgreementObservedData, included: Decimal, extra: Decimal, price: Decimal
) -> None:
    raw = data.model_dump(mode="json", by_alias=True)
    raw["additions"] = [
        {"id": 7, "agreementId": data.agreement.id, "billCustomer": "Billable",
         "quantity": float(included + extra), "lessIncluded": float(included), "unitPrice": float(price)}
    ]  # fmt: skip
    with_addition = AgreementObservedData.model_validate(raw)
    (result,) = map_items(with_addition, agreement=False, addition_ids=[7])
    if not isinstance(result, MappingError):
        assert result.billing_cost.amount >= 0


@settings(max_examples=150, deadline=None)
@given(snapshots())
def test_every_record_passes_full_wire_validation_unchanged(data: AgreementObservedData) -> None:
    """Records survive a round trip through the wire format unchanged (what the writer parses)."""
    for result in _all(data):
        if isinstance(result, MappingError):
            continue
        assert ContractRecordData.model_validate(result.model_dump()) == result
        event = ContractRecordMapped.build(result, source="contract-sync/mapper")
        assert parse(CONTRACT_RECORDS, event.to_bytes()) == event


@settings(max_examples=300, deadline=None)
@given(snapshots(), st.one_of(st.none(), st.uuids().map(str)), timestamps)
def test_fast_path_bytes_parse_into_exactly_the_validated_record(
    data: AgreementObservedData, correlationid: str | None, now: datetime
) -> None:
    """The hot path (plain fields + orjson) and the validated path (pydantic) agree on every record."""
    ids = [a.id for a in data.additions]
    fast = map_items_fields(data, agreement=True, addition_ids=ids)
    slow = map_items(data, agreement=True, addition_ids=ids)
    assert len(fast) == len(slow)
    for fields, record in zip(fast, slow, strict=True):
        if isinstance(record, MappingError):
            assert isinstance(fields, MappingError)
            assert (fields.code, fields.kind, fields.item_id) == (record.code, record.kind, record.item_id)
            continue
        assert not isinstance(fields, MappingError)
        raw = encode_mapped(fields, source="contract-sync/mapper", time=now, correlationid=correlationid)
        parsed = parse(CONTRACT_RECORDS, raw)
        assert decode_mapped(raw) is not None  # the writer's compiled decoder takes what the mapper writes
        expected = ContractRecordMapped.build(
            record, source="contract-sync/mapper", correlationid=correlationid, id=parsed.id, time=now
        )
        assert parsed == expected
        assert parsed.id.version == 4
        assert raw == expected.to_bytes()  # byte for byte what the pydantic model writes
