"""The field-ownership rule list (docs/design.md#field-ownership)."""

from __future__ import annotations

import pytest

from schemas.ownership import LOCAL, PSA_OWNED, PSA_SEEDED, field_class, split_edit


def test_the_three_classes_are_disjoint() -> None:
    assert not set(PSA_OWNED) & set(PSA_SEEDED)
    assert not set(PSA_OWNED) & set(LOCAL)
    assert not set(PSA_SEEDED) & set(LOCAL)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("status", "psa_owned"),
        ("billing_cost", "psa_owned"),
        ("billing_amount", "psa_owned"),
        ("currency", "psa_owned"),
        ("billing_cycle", "psa_owned"),
        ("name", "psa_seeded"),
        ("end_date", "psa_seeded"),
        ("notes", "local"),
        ("tags", "local"),
        ("contract_key", None),
        ("tenant_id", None),
    ],
)
def test_field_class(field: str, expected: str | None) -> None:
    assert field_class(field) == expected


def test_an_edit_touching_a_psa_owned_field_of_a_synced_contract_is_rejected_and_names_the_fields() -> None:
    split = split_edit({"billing_cost": "1", "status": "active", "notes": "x"}, psa_synced=True)
    assert split.rejected
    assert split.psa_owned == ("billing_cost", "status")


def test_seeded_and_local_fields_are_sorted_apart() -> None:
    split = split_edit({"name": "Renamed", "notes": "call"}, psa_synced=True)
    assert not split.rejected
    assert split.seeded == {"name": "Renamed"}
    assert split.local == {"notes": "call"}


def test_unknown_fields_are_always_rejected() -> None:
    assert split_edit({"tenant_id": "other"}, psa_synced=False).unknown == ("tenant_id",)


def test_a_contract_not_synced_from_the_psa_owns_its_status_itself() -> None:
    split = split_edit({"status": "cancelled"}, psa_synced=False)
    assert not split.rejected
    assert split.local == {"status": "cancelled"}
