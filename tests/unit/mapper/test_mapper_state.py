"""Behaviour of the mapper's pure decision logic (`services.mapper.state.handle`), one message at a time."""

from __future__ import annotations

import json
from typing import Any

from mapper_factories import (
    CLIENT,
    TENANT,
    addition_removed,
    agreement_removed,
    cw_addition,
    cw_agreement,
    observed,
    select,
    set_auto_sync,
    snapshot,
)

from schemas.envelope import CloudEvent
from schemas.events import CommandRejected, SyncFailed
from schemas.records import ContractRecordMapped, ContractRecordRetired
from schemas.topics import (
    CONTRACT_RECORDS,
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_TOPIC,
    DLQ_STAGE,
    PSA_AGREEMENTS,
    SYNC_COMMANDS,
    SYNC_EVENTS,
)
from services.mapper.messages import DeadLetter, Emit, Incoming, Output
from services.mapper.state import handle

KEY = f"{TENANT}:{CLIENT}".encode()


class Mapper:
    """Feeds messages to `handle` over one dict store, as the agent does over its table."""

    def __init__(self) -> None:
        self.store: dict[str, bytes] = {}
        self.offsets = {PSA_AGREEMENTS: 0, SYNC_COMMANDS: 0}

    def raw(self, topic: str, value: bytes, key: bytes | None = KEY) -> list[Output]:
        offset = self.offsets[topic]
        self.offsets[topic] += 1
        return handle(self.store, Incoming(topic=topic, partition=0, offset=offset, key=key, value=value))

    def send(self, event: CloudEvent) -> list[Output]:
        topic = (
            SYNC_COMMANDS if event.type.startswith(("sync.command", "contract.command")) else PSA_AGREEMENTS
        )
        return self.raw(topic, event.to_bytes(), key=event.key)


def records(outputs: list[Output]) -> list[ContractRecordMapped]:
    found = [o.event for o in outputs if isinstance(o, Emit) and isinstance(o.event, ContractRecordMapped)]
    assert all(o.topic == CONTRACT_RECORDS for o in outputs if isinstance(o, Emit) and o.event in found)
    return found  # type: ignore[return-value]


def keys(outputs: list[Output]) -> list[str]:
    return [r.data.contract_key for r in records(outputs)]


def events(outputs: list[Output], kind: type[Any]) -> list[Any]:
    found = [o for o in outputs if isinstance(o, Emit) and isinstance(o.event, kind)]
    assert all(o.topic == SYNC_EVENTS for o in found), "sync events go to sync.events.v1"
    return [o.event for o in found]


def dead_letters(outputs: list[Output]) -> list[DeadLetter]:
    return [o for o in outputs if isinstance(o, DeadLetter)]


def headers(letter: DeadLetter) -> dict[str, str]:
    return {name: value.decode() for name, value in letter.headers}


# --------------------------------------------------------------------------------------------- select


def test_observed_items_are_not_mapped_while_auto_sync_is_off() -> None:
    mapper = Mapper()
    assert mapper.send(snapshot(1, [11, 12])) == []


def test_select_maps_each_selected_agreement_and_addition_with_the_command_id() -> None:
    mapper = Mapper()
    mapper.send(snapshot(1, [11, 12]))
    command = select([1], [11])
    outputs = mapper.send(command)
    assert keys(outputs) == ["cw:acme:agreement:1", "cw:acme:addition:11"]
    assert {r.correlationid for r in records(outputs)} == {str(command.id)}
    assert all(o.event.key == KEY for o in outputs if isinstance(o, Emit))


def test_addition_selected_without_its_agreement_still_names_the_parent() -> None:
    mapper = Mapper()
    mapper.send(snapshot(1, [11, 12]))
    (record,) = records(mapper.send(select([], [12])))
    assert record.data.contract_key == "cw:acme:addition:12"
    assert record.data.parent_contract_key == "cw:acme:agreement:1"


def test_select_of_never_observed_ids_is_rejected_per_id_and_the_rest_applies() -> None:
    mapper = Mapper()
    mapper.send(snapshot(1, [11]))
    command = select([1, 2], [11, 99])
    outputs = mapper.send(command)
    assert keys(outputs) == ["cw:acme:agreement:1", "cw:acme:addition:11"]
    rejected = events(outputs, CommandRejected)
    assert [(r.data.reason, r.data.agreement_ids, r.data.addition_ids) for r in rejected] == [
        ("not_in_catalog", [2], []),
        ("not_in_catalog", [], [99]),
    ]
    assert all(r.data.command_id == str(command.id) and "refresh" in r.data.message for r in rejected)


def test_select_is_rejected_whole_while_auto_sync_is_on() -> None:
    mapper = Mapper()
    mapper.send(snapshot(1, [11]))
    mapper.send(set_auto_sync(True))
    outputs = mapper.send(select([1], [11]))
    assert records(outputs) == []
    (rejected,) = events(outputs, CommandRejected)
    assert rejected.data.reason == "auto_sync_enabled"
    assert (rejected.data.agreement_ids, rejected.data.addition_ids) == ([1], [11])


def test_a_client_cannot_select_another_clients_agreement() -> None:
    mapper = Mapper()
    mapper.send(snapshot(1, [11], client="250"))
    outputs = mapper.send(select([1], [11], client="251"))
    assert records(outputs) == []
    assert [r.data.reason for r in events(outputs, CommandRejected)] == ["not_in_catalog", "not_in_catalog"]


def test_later_changes_of_linked_items_are_not_applied_while_auto_sync_is_off() -> None:
    mapper = Mapper()
    mapper.send(snapshot(1, [11]))
    mapper.send(select([1], [11]))
    changed = snapshot(1, [11], version="2025-04-01T00:00:00Z", billAmount=2000.0)
    assert mapper.send(changed) == []
    # selecting again applies the newest snapshot
    (agreement, _addition) = records(mapper.send(select([1], [11])))
    assert agreement.data.billing_cost.amount == 2000
    assert agreement.data.source.psa_last_updated.isoformat().startswith("2025-04-01")


# --------------------------------------------------------------------------------------------- auto-sync


def test_set_auto_sync_emits_auto_sync_changed_with_the_command_id() -> None:
    mapper = Mapper()
    command = set_auto_sync(False)
    outputs = mapper.send(command)
    (changed,) = [o.event for o in outputs if isinstance(o, Emit)]
    assert changed.type == "sync.auto_sync.changed"
    assert changed.data.enabled is False and changed.correlationid == str(command.id)


def test_turning_auto_sync_on_applies_everything_pending_at_once() -> None:
    mapper = Mapper()
    mapper.send(snapshot(1, [11, 12]))
    mapper.send(snapshot(2, [21]))
    mapper.send(select([1], [11]))  # linked at the first version
    mapper.send(snapshot(1, [11, 12], version="2025-05-01T00:00:00Z"))  # changed since
    command = set_auto_sync(True)
    outputs = mapper.send(command)
    assert sorted(keys(outputs)) == sorted(
        [
            "cw:acme:agreement:1",
            "cw:acme:addition:11",
            "cw:acme:addition:12",
            "cw:acme:agreement:2",
            "cw:acme:addition:21",
        ]
    )
    assert {r.correlationid for r in records(outputs)} == {str(command.id)}


def test_turning_auto_sync_on_skips_items_already_mapped_at_their_current_version() -> None:
    mapper = Mapper()
    mapper.send(snapshot(1, [11]))
    mapper.send(snapshot(2, []))
    mapper.send(select([1], [11]))
    assert keys(mapper.send(set_auto_sync(True))) == ["cw:acme:agreement:2"]


def test_with_auto_sync_on_new_and_changed_items_are_mapped_when_observed() -> None:
    mapper = Mapper()
    mapper.send(set_auto_sync(True))
    assert keys(mapper.send(snapshot(1, [11]))) == ["cw:acme:agreement:1", "cw:acme:addition:11"]
    changed = records(mapper.send(snapshot(1, [11, 12], version="2025-05-01T00:00:00Z")))
    assert [r.data.contract_key for r in changed] == [
        "cw:acme:agreement:1",
        "cw:acme:addition:11",
        "cw:acme:addition:12",
    ]
    assert all(r.correlationid is None for r in changed)


def test_with_auto_sync_on_an_unchanged_reobservation_maps_nothing() -> None:
    mapper = Mapper()
    mapper.send(set_auto_sync(True))
    mapper.send(snapshot(1, [11]))
    assert mapper.send(snapshot(1, [11])) == []


def test_an_older_snapshot_never_replaces_a_newer_one() -> None:
    mapper = Mapper()
    mapper.send(snapshot(1, [], version="2025-05-01T00:00:00Z", billAmount=900.0))
    assert mapper.send(snapshot(1, [], version="2025-04-01T00:00:00Z", billAmount=100.0)) == []
    (record,) = records(mapper.send(select([1])))
    assert record.data.billing_cost.amount == 900


def test_turning_auto_sync_off_stops_applying_changes() -> None:
    mapper = Mapper()
    mapper.send(set_auto_sync(True))
    mapper.send(snapshot(1, []))
    mapper.send(set_auto_sync(False))
    assert mapper.send(snapshot(1, [], version="2025-05-01T00:00:00Z")) == []


# --------------------------------------------------------------------------------------------- removals


def test_removed_linked_agreement_retires_it_and_its_linked_additions() -> None:
    mapper = Mapper()
    mapper.send(snapshot(1, [11, 12]))
    mapper.send(select([1], [11]))
    removal = agreement_removed(1)
    outputs = mapper.send(removal)
    retired = [o.event for o in outputs if isinstance(o, Emit) and isinstance(o.event, ContractRecordRetired)]
    assert [r.data.contract_key for r in retired] == ["cw:acme:agreement:1", "cw:acme:addition:11"]
    assert all(r.correlationid is None for r in retired)  # correlationid names commands only
    assert retired[0].data.evidence == "direct_get_404: /finance/agreements/1"
    assert records(mapper.send(select([1]))) == []  # gone from the catalog


def test_a_stale_snapshot_does_not_undo_a_removal_but_a_newer_one_does() -> None:
    mapper = Mapper()
    mapper.send(snapshot(1, [11]))
    mapper.send(agreement_removed(1))
    mapper.send(snapshot(1, [11]))  # read before the deletion, delivered after it
    assert [r.data.reason for r in events(mapper.send(select([1])), CommandRejected)] == ["not_in_catalog"]
    mapper.send(snapshot(1, [11], version="2025-05-01T00:00:00Z"))
    assert keys(mapper.send(select([1]))) == ["cw:acme:agreement:1"]


def test_a_same_version_snapshot_does_not_bring_back_a_removed_addition() -> None:
    mapper = Mapper()
    mapper.send(snapshot(1, [11, 12]))
    mapper.send(addition_removed(1, 12))
    mapper.send(snapshot(1, [11, 12]))
    assert [r.data.reason for r in events(mapper.send(select([], [12])), CommandRejected)] == [
        "not_in_catalog"
    ]


def test_removed_unlinked_items_retire_nothing() -> None:
    mapper = Mapper()
    mapper.send(snapshot(1, [11]))
    assert mapper.send(agreement_removed(1)) == []
    assert mapper.send(agreement_removed(404)) == []


def test_removed_linked_addition_is_retired_once() -> None:
    mapper = Mapper()
    mapper.send(snapshot(1, [11, 12]))
    mapper.send(select([], [11, 12]))
    (retired,) = [o.event for o in mapper.send(addition_removed(1, 12)) if isinstance(o, Emit)]
    assert isinstance(retired, ContractRecordRetired)
    assert retired.data.contract_key == "cw:acme:addition:12" and retired.data.source.addition_id == 12
    assert mapper.send(addition_removed(1, 12)) == []
    rejected = events(mapper.send(select([], [12])), CommandRejected)
    assert [r.data.reason for r in rejected] == ["not_in_catalog"]


# --------------------------------------------------------------------------------------------- bad input


def test_malformed_json_command_is_dead_lettered_and_rejected_when_the_client_is_readable() -> None:
    mapper = Mapper()
    good = json.loads(select([1]).to_bytes())
    good["data"]["agreement_ids"] = "not-a-list"
    value = json.dumps(good).encode()
    outputs = mapper.raw(SYNC_COMMANDS, value)
    (letter,) = dead_letters(outputs)
    assert letter.value == value
    assert headers(letter)[DLQ_REASON] == "validation_error"
    assert headers(letter)[DLQ_SOURCE_TOPIC] == SYNC_COMMANDS and headers(letter)[DLQ_SOURCE_OFFSET] == "0"
    (rejected,) = events(outputs, CommandRejected)
    assert rejected.data.reason == "malformed" and rejected.data.command_id == good["id"]


def test_unreadable_bytes_are_dead_lettered_without_an_event() -> None:
    outputs = Mapper().raw(SYNC_COMMANDS, b"\xff{not json")
    assert [headers(d)[DLQ_REASON] for d in dead_letters(outputs)] == ["malformed_json"]
    assert [o for o in outputs if isinstance(o, Emit)] == []


def test_unknown_command_type_is_rejected_as_unknown_type() -> None:
    doc = json.loads(select([1]).to_bytes())
    doc["type"] = "sync.command.delete_everything"
    outputs = Mapper().raw(SYNC_COMMANDS, json.dumps(doc).encode())
    assert headers(dead_letters(outputs)[0])[DLQ_REASON] == "unknown_type"
    assert [r.data.reason for r in events(outputs, CommandRejected)] == ["unknown_type"]


def test_malformed_psa_event_is_dead_lettered_with_a_sync_failed_event() -> None:
    doc = json.loads(snapshot(1, []).to_bytes())
    del doc["data"]["agreement"]["id"]
    outputs = Mapper().raw(PSA_AGREEMENTS, json.dumps(doc).encode())
    assert headers(dead_letters(outputs)[0])[DLQ_STAGE] == "mapper.parse"
    (failed,) = events(outputs, SyncFailed)
    assert failed.data.stage == "mapper.parse" and failed.data.retryable is False


def test_message_keyed_for_another_client_is_dead_lettered() -> None:
    command = select([1])
    outputs = Mapper().raw(SYNC_COMMANDS, command.to_bytes(), key=b"acme:999")
    assert headers(dead_letters(outputs)[0])[DLQ_REASON] == "key_mismatch"
    assert [r.data.command_id for r in events(outputs, CommandRejected)] == [str(command.id)]


def test_one_unmappable_item_is_dead_lettered_and_the_others_still_map() -> None:
    mapper = Mapper()
    mapper.send(set_auto_sync(True))
    bad = observed(
        cw_agreement(id=1),
        [cw_addition(id=11, agreementId=1), cw_addition(id=12, agreementId=1, billCustomer=None)],
    )
    outputs = mapper.send(bad)
    assert keys(outputs) == ["cw:acme:agreement:1", "cw:acme:addition:11"]
    (letter,) = dead_letters(outputs)
    assert headers(letter)[DLQ_REASON] == "mapping.missing_bill_customer"
    assert headers(letter)[DLQ_STAGE] == "mapper.map"
    assert letter.value == bad.to_bytes()
    (failed,) = events(outputs, SyncFailed)
    assert failed.data.error_code == "mapping.missing_bill_customer" and "addition 12" in failed.data.message


def test_unmappable_item_stays_unlinked_and_maps_after_a_fix() -> None:
    mapper = Mapper()
    mapper.send(set_auto_sync(True))
    mapper.send(observed(cw_agreement(id=1, billingCycle={"name": "Hourly"})))
    fixed = observed(cw_agreement(id=1), psa_last_updated="2025-05-01T00:00:00Z")
    assert keys(mapper.send(fixed)) == ["cw:acme:agreement:1"]


def test_refresh_and_edit_commands_are_left_to_other_services() -> None:
    from schemas.commands import RefreshCommand, RefreshData

    refresh = RefreshCommand.build(
        RefreshData(tenant_id=TENANT, client_id=CLIENT, requested_by="ui"), source="ui"
    )
    assert Mapper().send(refresh) == []


def test_state_round_trips_through_bytes_only() -> None:
    mapper = Mapper()
    mapper.send(snapshot(1, [11]))
    mapper.send(select([1]))
    assert all(isinstance(v, bytes) for v in mapper.store.values())
    assert all(k.startswith(f"{TENANT}:{CLIENT}|") for k in mapper.store)
    # a fresh mapper over a copy of the store (a restarted worker after table recovery) continues
    restarted = Mapper()
    restarted.store = dict(mapper.store)
    assert keys(restarted.send(select([], [11]))) == ["cw:acme:addition:11"]
