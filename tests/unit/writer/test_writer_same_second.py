"""The writer tells two changes within one ConnectWise `lastUpdated` second apart by the digest of
their mapped inputs: in the catalog's state and in what it stores of a record."""

from __future__ import annotations

from datetime import timedelta

import pytest
from writer_factories import T0, at, make_observed, make_record, unique_tenant

from schemas.fast import decode_mapped
from schemas.psa_digest import addition_digest, agreement_digest
from services.writer.apply import (
    STAGE_COLUMNS,
    StagedRecord,
    catalog_rows,
    catalog_state,
    contract_row,
    staged_from_event,
    staged_from_record,
)


def parse_mapped(raw: bytes) -> StagedRecord | None:
    """The writer's fast path: the compiled codec, staged."""
    record = decode_mapped(raw)
    return None if record is None else staged_from_record(record)


DIGEST_A, DIGEST_B = "0123456789abcdef", "fedcba9876543210"


@pytest.mark.parametrize(
    ("item_version", "item_digest", "contract_digest", "state"),
    [
        (at(0), DIGEST_B, DIGEST_A, "updated"),  # same second, other content
        (at(0), DIGEST_A, DIGEST_A, "synced"),
        (at(0), DIGEST_A, None, "synced"),  # a contract from before digests: the version decides
        (at(0), None, DIGEST_A, "synced"),
        (at(1), DIGEST_A, DIGEST_A, "updated"),  # newer version
        (at(-1), DIGEST_B, DIGEST_A, "synced"),  # an older catalog row (the catalog lags)
    ],
)
def test_catalog_state_compares_content_when_the_versions_are_equal(
    item_version: object, item_digest: str | None, contract_digest: str | None, state: str
) -> None:
    assert (
        catalog_state(
            removed_at=None,
            item_psa_last_updated=item_version,  # type: ignore[arg-type]
            contract_psa_last_updated=at(0),
            has_contract=True,
            item_psa_digest=item_digest,
            contract_psa_digest=contract_digest,
        )
        == state
    )


def test_catalog_rows_carry_the_digest_the_mapper_puts_in_the_items_records() -> None:
    event = make_observed(unique_tenant(), additions={5: at(0), 6: at(0)})
    agreement_row, *addition_rows = catalog_rows(event)
    assert agreement_row.psa_digest == agreement_digest(event.data)
    assert [r.psa_digest for r in addition_rows] == [
        addition_digest(event.data, a) for a in event.data.additions
    ]
    renamed = make_observed(event.data.tenant_id, additions={5: at(0), 6: at(0)}, name="Renamed")
    renamed_rows = catalog_rows(renamed)
    assert renamed_rows[0].psa_digest != agreement_row.psa_digest
    assert [r.psa_digest for r in renamed_rows[1:]] == [r.psa_digest for r in addition_rows], (
        "an agreement's name is no input of its additions' records"
    )


def test_a_records_digest_reaches_the_stored_row_by_either_parse() -> None:
    record = make_record(unique_tenant(), version=T0 + timedelta(seconds=1), psa_digest=DIGEST_A)
    column = STAGE_COLUMNS.index("psa_digest")
    assert contract_row(record).psa_digest == DIGEST_A
    assert staged_from_event(record).values[column] == DIGEST_A
    fast = parse_mapped(record.to_bytes())
    assert fast is not None and fast.values[column] == DIGEST_A


def test_a_record_without_a_digest_is_still_accepted() -> None:
    record = make_record(unique_tenant())
    fast = parse_mapped(record.to_bytes())
    assert fast is not None and fast.values[STAGE_COLUMNS.index("psa_digest")] is None
