"""`schemas.psa_digest`: equal mapped inputs give equal digests in every process; any input a record
depends on changes its digest; what no rule reads does not."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mapper"))

import orjson
from mapper_factories import cw_addition, cw_agreement, observed_data

from schemas.fast import decode_observed
from schemas.psa import AgreementObservedData
from schemas.psa_digest import DIGEST_PATTERN, addition_digest, agreement_digest
from services.mapper.mapping import map_items


def data(
    agreement: dict[str, Any] | None = None, addition: dict[str, Any] | None = None, **kw: Any
) -> AgreementObservedData:
    return observed_data(
        cw_agreement(**(agreement or {})), [cw_addition(id=11, agreementId=1234, **(addition or {}))], **kw
    )


def digests(d: AgreementObservedData) -> tuple[str, str]:
    return agreement_digest(d), addition_digest(d, d.additions[0])


def test_a_digest_is_sixteen_hex_digits_and_deterministic() -> None:
    first, again = digests(data()), digests(data())
    assert first == again
    assert all(re.match(DIGEST_PATTERN, d) for d in first)


def test_the_compiled_decoders_structs_and_the_pydantic_models_give_the_same_digests() -> None:
    full = data()
    raw = orjson.dumps(
        {
            "type": "psa.agreement.observed",
            "specversion": "1.0",
            "id": "5b0c8a52-3f0e-4f57-9a51-8f1f1c7d2e10",
            "source": "t",
            "time": "2026-01-01T00:00:00Z",
            "subject": "acme:250",
            "tenantid": "acme",
            "data": full.model_dump(mode="json", by_alias=True),
        }
    )
    fast = decode_observed(raw)
    assert fast is not None
    assert digests(fast.data) == digests(full)


@pytest.mark.parametrize(
    "change",
    [
        {"customFields": [{"id": 1, "value": "changed"}]},  # unknown to the models: never read
        {"_info": {"lastUpdated": "2025-03-14T16:02:12Z", "updatedBy": "someone-else"}},
    ],
)
def test_fields_no_rule_reads_do_not_change_the_digests(change: dict[str, Any]) -> None:
    assert digests(data(change)) == digests(data())


def test_the_same_amount_written_differently_gives_the_same_digest() -> None:
    assert digests(data({"billAmount": 115.5})) == digests(data({"billAmount": 115.50}))


@pytest.mark.parametrize(
    ("agreement", "addition", "kw"),
    [
        ({"billAmount": 1500.5}, None, {}),
        ({"name": "Renamed"}, None, {}),
        ({"invoiceDescription": "new text"}, None, {}),
        (None, None, {"time_zone": "Europe/Berlin"}),
    ],
)
def test_an_agreement_only_input_changes_the_agreement_digest_but_not_its_additions(
    agreement: dict[str, Any] | None, addition: dict[str, Any] | None, kw: dict[str, Any]
) -> None:
    before, after = digests(data()), digests(data(agreement, addition, **kw))
    assert after[0] != before[0]
    if kw:  # the tenant's zone is an input of every record
        assert after[1] != before[1]
    else:
        assert after[1] == before[1]


@pytest.mark.parametrize(
    "agreement",
    [
        {"billingCycle": {"id": 3, "name": "Quarterly"}},
        {"agreementStatus": "Inactive"},
        {"cancelledFlag": True},
        {"endDate": "2025-01-01T00:00:00Z"},
        {"currency": {"id": 8, "currencyCode": "EUR"}},
        {"billOneTimeFlag": True},
    ],
)
def test_agreement_fields_an_additions_record_depends_on_change_both_digests(
    agreement: dict[str, Any],
) -> None:
    before, after = digests(data()), digests(data(agreement))
    assert after[0] != before[0] and after[1] != before[1]


def test_agreement_fields_outside_the_addition_context_never_change_an_additions_record() -> None:
    """The guard for `ADDITION_CONTEXT_FIELDS`: if a rule started reading another agreement field,
    one of these changes would change the addition's record while its digest stays the same."""
    changes = [
        {"billAmount": 99.0},
        {"name": "Other"},
        {"invoiceDescription": "x"},
        {"type": {"id": 9, "name": "Other"}},
        {"company": {"id": 1, "identifier": "X"}},
        {"dateCancelled": "2020-01-01T00:00:00Z"},
        {"oneTimeFlag": True},
    ]

    def addition_record(d: AgreementObservedData) -> Any:
        (record,) = map_items(d, agreement=False, addition_ids=[11])
        return record.model_dump() if not isinstance(record, Exception) else record

    base = data()
    for change in changes:
        changed = data(change)
        assert addition_digest(changed, changed.additions[0]) == addition_digest(base, base.additions[0])
        without_digest = lambda r: {**r, "source": {**r["source"], "psa_digest": None}}  # noqa: E731
        assert without_digest(addition_record(changed)) == without_digest(addition_record(base)), change
