"""A removed item that ConnectWise answers again is restored (`services.mapper.state`): its linked
contracts are mapped again (`contract.record.mapped`) and announced as restored
(`contract.record.restored`), also when the snapshot carries the version it had before the removal."""

from __future__ import annotations

from mapper_factories import (
    addition_removed,
    agreement_removed,
    cw_addition,
    cw_agreement,
    observed,
    select,
    set_auto_sync,
)
from test_mapper_state import Mapper, events, keys, records

from schemas.events import CommandRejected
from schemas.psa import AgreementObserved
from schemas.psa_digest import AdditionDigests, agreement_digest
from schemas.records import ContractRecordRestored
from services.mapper.messages import Emit, Output

AFTER_REMOVAL = "2025-06-03T09:00:00Z"  # the removals of mapper_factories are observed 2025-06-02T08:00


def seen(
    agreement_id: int, additions: list[int], observed_at: str, bill_amount: float = 1500.0
) -> AgreementObserved:
    return observed(
        cw_agreement(id=agreement_id, billAmount=bill_amount),
        [cw_addition(id=a, agreementId=agreement_id) for a in additions],
        observed_at=observed_at,
    )


def restored(outputs: list[Output]) -> list[str]:
    return [
        o.event.data.contract_key
        for o in outputs
        if isinstance(o, Emit) and isinstance(o.event, ContractRecordRestored)
    ]


def test_a_removed_agreement_answered_again_with_the_same_version_is_restored() -> None:
    mapper = Mapper()
    mapper.send(seen(1, [11, 12], "2025-06-01T12:00:00Z"))
    mapper.send(select([1], [11]))
    mapper.send(agreement_removed(1))

    outputs = mapper.send(seen(1, [11, 12], AFTER_REMOVAL))

    linked = ["cw:acme:agreement:1", "cw:acme:addition:11"]
    assert keys(outputs) == linked  # mapped again; 12 was never linked
    assert sorted(restored(outputs)) == sorted(linked)
    types = [o.type for o in outputs if isinstance(o, Emit)]
    assert types.index("contract.record.restored") > max(
        i for i, t in enumerate(types) if t == "contract.record.mapped"
    )  # the writer sees the record, then the restore
    assert keys(mapper.send(select([], [12]))) == ["cw:acme:addition:12"]  # back in the catalog


def test_a_snapshot_read_before_the_removal_still_does_not_restore() -> None:
    mapper = Mapper()
    mapper.send(seen(1, [11], "2025-06-01T12:00:00Z"))
    mapper.send(select([1]))
    mapper.send(agreement_removed(1))

    assert mapper.send(seen(1, [11], "2025-06-01T12:00:00Z")) == []
    assert [r.data.reason for r in events(mapper.send(select([1])), CommandRejected)] == ["not_in_catalog"]


def test_a_removed_addition_answered_again_is_restored() -> None:
    mapper = Mapper()
    mapper.send(seen(1, [11, 12], "2025-06-01T12:00:00Z"))
    mapper.send(select([], [12]))
    mapper.send(addition_removed(1, 12))

    outputs = mapper.send(seen(1, [11, 12], AFTER_REMOVAL))

    assert keys(outputs) == ["cw:acme:addition:12"]
    assert restored(outputs) == ["cw:acme:addition:12"]


def test_with_auto_sync_on_a_restore_maps_each_item_once() -> None:
    mapper = Mapper()
    mapper.send(set_auto_sync(True))
    mapper.send(seen(1, [11], "2025-06-01T12:00:00Z"))
    mapper.send(agreement_removed(1))

    outputs = mapper.send(seen(1, [11], AFTER_REMOVAL))

    assert sorted(keys(outputs)) == ["cw:acme:addition:11", "cw:acme:agreement:1"]
    assert sorted(restored(outputs)) == ["cw:acme:addition:11", "cw:acme:agreement:1"]
    assert mapper.send(seen(1, [11], "2025-06-04T09:00:00Z")) == []  # nothing pending any more


def test_a_removed_agreement_changed_within_its_last_second_is_restored_with_the_new_content() -> None:
    mapper = Mapper()
    mapper.send(seen(1, [11], "2025-06-01T12:00:00Z", bill_amount=115.0))
    mapper.send(select([1], [11]))
    mapper.send(agreement_removed(1))

    # the same ConnectWise version, other content (changed within that second), read after the removal
    again = seen(1, [11], AFTER_REMOVAL, bill_amount=115.5)
    outputs = mapper.send(again)

    by_key = {r.data.contract_key: r for r in records(outputs)}
    assert str(by_key["cw:acme:agreement:1"].data.billing_cost.amount) == "115.50"
    assert by_key["cw:acme:agreement:1"].data.source.psa_digest == agreement_digest(again.data)
    (addition,) = again.data.additions
    assert by_key["cw:acme:addition:11"].data.source.psa_digest == AdditionDigests(again.data)(addition)
    assert sorted(restored(outputs)) == ["cw:acme:addition:11", "cw:acme:agreement:1"]


def test_with_auto_sync_on_a_same_second_change_after_a_restore_is_mapped_and_a_repeat_is_not() -> None:
    mapper = Mapper()
    mapper.send(set_auto_sync(True))
    mapper.send(seen(1, [11], "2025-06-01T12:00:00Z", bill_amount=115.0))
    mapper.send(agreement_removed(1))
    assert sorted(restored(mapper.send(seen(1, [11], AFTER_REMOVAL, bill_amount=115.0)))) == [
        "cw:acme:addition:11",
        "cw:acme:agreement:1",
    ]

    changed = mapper.send(seen(1, [11], "2025-06-03T09:00:01Z", bill_amount=115.5))  # same version

    assert keys(changed) == ["cw:acme:agreement:1"] and restored(changed) == []
    assert mapper.send(seen(1, [11], "2025-06-03T09:00:02Z", bill_amount=115.5)) == []
