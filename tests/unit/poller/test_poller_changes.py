from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas.topics import PSA_AGREEMENTS, parse
from services.poller.changes import (
    KnownAgreement,
    SnapshotDigest,
    TenantContext,
    addition_ids_of,
    additions_digest,
    build_addition_removed,
    build_agreement_removed,
    build_observed,
    company_id_of,
    evidence_404,
    is_changed,
    needs_additions_read,
    newest_last_updated,
    removed_addition_ids,
    snapshot_digest,
)

OBSERVED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TENANT = TenantContext("acme", "America/New_York", "CAD")


def agreement(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": 1234,
        "name": "Acme - Managed Services",
        "company": {"id": 250, "identifier": "AcmeCorp", "name": "Acme"},
        "billAmount": 1500.5,
        "agreementStatus": "Active",
        "someFutureField": {"nested": True},
        "_info": {"lastUpdated": "2026-02-14T16:02:11Z", "updatedBy": "jsmith"},
    }
    base.update(overrides)
    return base


def addition(id_: int, stamp: str = "2026-02-10T09:15:42Z", **overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": id_,
        "agreementId": 1234,
        "quantity": 25.0,
        "unitPrice": 22.1,
        "billCustomer": "Billable",
        "_info": {"lastUpdated": stamp},
    }
    base.update(overrides)
    return base


def test_digest_ignores_key_order_and_addition_order() -> None:
    a = snapshot_digest(agreement(), [addition(1), addition(2)])
    reordered = dict(reversed(list(agreement().items())))
    b = snapshot_digest(reordered, [addition(2), addition(1)])
    assert a == b
    assert len(a.value) == 64


def test_digest_changes_when_anything_changes_including_last_updated() -> None:
    base = snapshot_digest(agreement(), [addition(1)])
    assert snapshot_digest(agreement(billAmount=1600), [addition(1)]).value != base.value
    assert snapshot_digest(agreement(), [addition(1, quantity=26)]).agreement == base.agreement
    assert snapshot_digest(agreement(), [addition(1, quantity=26)]).additions != base.additions
    bumped = agreement(_info={"lastUpdated": "2026-02-15T00:00:00Z", "updatedBy": "jsmith"})
    assert snapshot_digest(bumped, [addition(1)]).agreement != base.agreement


def test_stored_digest_round_trips_and_rejects_foreign_values() -> None:
    digest = snapshot_digest(agreement(), [])
    assert SnapshotDigest.parse(digest.value) == digest
    assert SnapshotDigest.parse("sha256:abc") is None
    assert SnapshotDigest.parse(None) is None


def test_unchanged_agreement_in_an_overlapping_window_does_not_need_its_additions_reread() -> None:
    digest = snapshot_digest(agreement(), [addition(1)])
    known = KnownAgreement(1234, "250", digest)
    assert not needs_additions_read(agreement(), known)
    assert needs_additions_read(agreement(name="Renamed"), known)
    assert needs_additions_read(agreement(), None)
    assert needs_additions_read(agreement(), KnownAgreement(1234, "250", None))


def test_only_a_differing_snapshot_counts_as_changed() -> None:
    digest = snapshot_digest(agreement(), [addition(1)])
    known = KnownAgreement(1234, "250", digest)
    assert not is_changed(snapshot_digest(agreement(), [addition(1)]), known)
    assert is_changed(snapshot_digest(agreement(), [addition(1), addition(2)]), known)
    assert is_changed(digest, None)


def test_psa_last_updated_is_the_newest_stamp_of_agreement_and_additions() -> None:
    stamps = newest_last_updated(agreement(), [addition(1, "2026-02-20T08:00:00Z"), addition(2)])
    assert stamps == datetime(2026, 2, 20, 8, tzinfo=UTC)
    assert newest_last_updated({"id": 1}, []) is None


def test_observed_event_carries_the_full_snapshot_unknown_fields_and_tenant_facts() -> None:
    event = build_observed(
        TENANT, "250", agreement(), [addition(2), addition(1)], OBSERVED_AT, correlationid="cmd-1"
    )
    assert event.key == b"acme:250"
    assert event.correlationid == "cmd-1"
    data = event.data
    assert data.time_zone == "America/New_York" and data.default_currency == "CAD"
    assert [a.id for a in data.additions] == [1, 2]
    assert data.psa_last_updated == datetime(2026, 2, 14, 16, 2, 11, tzinfo=UTC)
    assert data.agreement.bill_amount == Decimal("1500.5")
    wire = json.loads(event.to_bytes())
    assert wire["data"]["agreement"]["someFutureField"] == {"nested": True}
    assert wire["data"]["agreement"]["billAmount"] == 1500.5
    assert parse(PSA_AGREEMENTS, event.to_bytes()) == event


def test_observed_without_any_stamp_uses_the_read_time_as_version() -> None:
    raw = agreement()
    raw.pop("_info")
    event = build_observed(TENANT, "250", raw, [], OBSERVED_AT)
    assert event.data.psa_last_updated == OBSERVED_AT


def test_data_the_wire_contract_cannot_carry_raises_validation_error() -> None:
    with pytest.raises(ValidationError):
        build_observed(TENANT, "250", agreement(agreementStatus="Exploded"), [], OBSERVED_AT)


def test_removal_events_name_their_evidence() -> None:
    evidence = evidence_404("/finance/agreements/1234")
    removed = build_agreement_removed(TENANT, "250", 1234, OBSERVED_AT, evidence)
    assert removed.type == "psa.agreement.removed"
    assert removed.data.evidence.method == "direct_get_404"
    assert "answered 404" in removed.data.evidence.detail
    gone = build_addition_removed(
        TENANT, "250", 1234, 7, OBSERVED_AT, evidence_404("/x", after_callback=True)
    )
    assert gone.data.addition_id == 7 and gone.data.evidence.method == "deleted_callback"


def test_removed_additions_are_previous_ids_missing_now() -> None:
    assert removed_addition_ids(frozenset({1, 2, 3}), [1, 3, 4]) == [2]
    assert removed_addition_ids(None, [1]) == []
    assert addition_ids_of([addition(5), {"id": True}, {"name": "x"}]) == frozenset({5})


def test_company_id_is_read_from_the_reference_and_must_be_positive() -> None:
    assert company_id_of(agreement()) == 250
    assert company_id_of(agreement(company={})) is None
    assert company_id_of(agreement(company={"id": True})) is None


def test_additions_digest_is_independent_of_order() -> None:
    assert additions_digest([addition(1), addition(2)]) == additions_digest([addition(2), addition(1)])
