"""The writer's pure rules: upsert decisions, batch reduction, edits, catalog states, planning."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from writer_factories import (
    T0,
    as_incoming,
    at,
    make_edit,
    make_observed,
    make_record,
    make_retired,
    make_set_auto_sync,
    unique_tenant,
)

from schemas import SelectCommand, SelectData
from schemas.ownership import LOCAL, PSA_OWNED_COLUMNS, PSA_SEEDED
from schemas.topics import (
    CONTRACT_RECORDS,
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    DLQ_STAGE,
    PSA_AGREEMENTS,
    SYNC_COMMANDS,
)
from services.common.db import MIGRATIONS_DIR
from services.writer.apply import (
    STAGE_COLUMNS,
    StagedRecord,
    StoredContract,
    catalog_rows,
    catalog_state,
    contract_row,
    count_states,
    decide_edit,
    merge_contract,
    reduce_catalog,
    reduce_records,
    stage_values,
    staged_from_event,
)
from services.writer.consumer import next_offsets
from services.writer.handlers import (
    AppliedCounts,
    BatchResult,
    DeadLetter,
    EditOutcome,
    OutboxTopics,
    events_for,
    outbox_messages,
    plan_batch,
)

TENANT = "acme"


def stored_from(record_values: dict[str, object], **overrides: object) -> StoredContract:
    values = dict(record_values)
    values.update(overrides)
    return StoredContract(
        contract_key=str(values["contract_key"]),
        tenant_id=str(values["tenant_id"]),
        client_id=str(values["client_id"]),
        psa_synced=bool(values.get("psa_synced", True)),
        psa_last_updated=values["psa_last_updated"],  # type: ignore[arg-type]
        values=values,
        local_overrides=dict(values.get("local_overrides") or {}),  # type: ignore[call-overload]
        removed_in_psa_at=values.get("removed_in_psa_at"),  # type: ignore[arg-type]
    )


def created(record_version_minutes: int = 0, **record: object) -> StoredContract:
    row = contract_row(make_record(TENANT, version=at(record_version_minutes), **record))  # type: ignore[arg-type]
    _, values = merge_contract(None, row)
    values.update(notes="our notes", tags=["vip"], owner="alice")
    return stored_from(values)


class TestMergeContract:
    def test_creates_a_psa_synced_contract_with_psa_values_as_effective_values(self) -> None:
        outcome, values = merge_contract(None, contract_row(make_record(TENANT, name="Backup")))
        assert outcome == "created"
        assert values["name"] == values["psa_name"] == "Backup"
        assert values["psa_synced"] is True
        assert values["billing_amount"] == Decimal("1500.00")

    def test_reapplying_the_same_record_changes_nothing(self) -> None:
        stored = created()
        outcome, values = merge_contract(stored, contract_row(make_record(TENANT)))
        assert outcome == "unchanged"
        assert values == dict(stored.values)

    def test_an_older_version_after_a_newer_one_changes_nothing(self) -> None:
        stored = created(10, status="active")
        outcome, values = merge_contract(
            stored, contract_row(make_record(TENANT, version=at(5), status="cancelled"))
        )
        assert outcome == "unchanged"
        assert values["status"] == "active"

    def test_a_newer_version_writes_psa_owned_fields(self) -> None:
        stored = created(0)
        row = contract_row(
            make_record(TENANT, version=at(1), status="expired", amount="99.50", billing_cycle="annual")
        )
        outcome, values = merge_contract(stored, row)
        assert outcome == "updated"
        assert (values["status"], values["billing_amount"], values["billing_cycle"]) == (
            "expired",
            Decimal("99.50"),
            "annual",
        )

    def test_a_local_override_of_a_seeded_field_survives_a_sync_and_the_psa_value_stays_visible(self) -> None:
        stored = created(0)
        stored = replace(
            stored, values={**stored.values, "name": "Our name"}, local_overrides={"name": "Our name"}
        )
        outcome, values = merge_contract(
            stored, contract_row(make_record(TENANT, version=at(1), name="PSA v2"))
        )
        assert outcome == "updated"
        assert values["name"] == "Our name"
        assert values["psa_name"] == "PSA v2"

    def test_seeded_fields_without_override_follow_the_psa(self) -> None:
        stored = created(0)
        _, values = merge_contract(
            stored, contract_row(make_record(TENANT, version=at(1), description="new"))
        )
        assert values["description"] == values["psa_description"] == "new"

    def test_local_fields_are_never_written_by_a_sync(self) -> None:
        stored = created(0)
        _, values = merge_contract(
            stored, contract_row(make_record(TENANT, version=at(1), status="inactive"))
        )
        assert (values["notes"], values["tags"], values["owner"]) == ("our notes", ["vip"], "alice")

    def test_a_record_of_another_tenant_under_the_same_key_changes_nothing(self) -> None:
        stored = replace(created(0), tenant_id="other")
        outcome, _ = merge_contract(
            stored, contract_row(make_record(TENANT, version=at(1), status="expired"))
        )
        assert outcome == "unchanged"

    def test_a_retired_contract_comes_back_only_with_a_strictly_newer_version(self) -> None:
        base = created(5)
        stored = replace(base, removed_in_psa_at=at(6), values={**base.values, "removed_in_psa_at": at(6)})
        same, values = merge_contract(stored, contract_row(make_record(TENANT, version=at(5))))
        assert same == "unchanged"
        assert values["removed_in_psa_at"] == at(6)
        newer, values = merge_contract(stored, contract_row(make_record(TENANT, version=at(7))))
        assert newer == "updated"
        assert values["removed_in_psa_at"] is None


def staged(tenant: str, **record: Any) -> StagedRecord:
    return staged_from_event(make_record(tenant, **record))


class TestReduceRecords:
    def test_keeps_the_newest_version_per_contract_and_counts_the_rest_superseded(self) -> None:
        a1 = staged(TENANT, agreement_id=1, version=at(2))
        a1_old = staged(TENANT, agreement_id=1, version=at(1))
        b = staged(TENANT, agreement_id=2)
        reduced = reduce_records([(0, a1), (1, a1_old), (2, b)])
        assert {e.id for _, e in reduced.upserts} == {a1.id, b.id}
        assert [e.id for e in reduced.superseded] == [a1_old.id]

    def test_on_equal_versions_the_later_record_wins(self) -> None:
        first = staged(TENANT, status="active")
        second = staged(TENANT, status="expired")
        reduced = reduce_records([(0, first), (1, second)])
        assert [e.id for _, e in reduced.upserts] == [second.id]

    def test_a_retire_after_the_last_mapped_record_is_kept(self) -> None:
        reduced = reduce_records([(0, staged(TENANT)), (1, make_retired(TENANT))])
        assert [r.contract_key for r in reduced.retires] == [f"cw:{TENANT}:agreement:1"]

    def test_a_retire_followed_by_a_mapped_record_of_the_same_contract_is_dropped(self) -> None:
        reduced = reduce_records([(0, make_retired(TENANT)), (1, staged(TENANT, version=at(3)))])
        assert reduced.retires == []
        assert len(reduced.upserts) == 1


class TestStageRow:
    def test_stage_values_follow_the_stage_column_order(self) -> None:
        record = make_record(TENANT, addition_id=9, end_date=date(2027, 1, 1))
        row = contract_row(record)
        expected = list(row.stage_tuple())
        expected[STAGE_COLUMNS.index("explanation")] = "X"
        assert list(stage_values(record, "X")) == expected


class TestDecideEdit:
    def stored(self, **overrides: object) -> StoredContract:
        return replace(created(0), **overrides)  # type: ignore[arg-type]

    def decide(self, changes: dict[str, object], stored: StoredContract | None = None, **kw: str):  # type: ignore[no-untyped-def]
        return decide_edit(
            tenant_id=kw.get("tenant", TENANT),
            client_id=kw.get("client", "100"),
            contract_id=kw.get("contract", f"cw:{TENANT}:agreement:1"),
            changes=changes,
            stored=stored if stored is not None else self.stored(),
        )

    def test_rejects_an_edit_of_psa_owned_fields_whole_naming_the_fields(self) -> None:
        decision = self.decide(
            {"status": "cancelled", "billing_cost": {"amount": "1", "currency": "USD"}, "notes": "x"}
        )
        assert not decision.accepted
        assert decision.reason == "psa_owned_field"
        assert decision.fields == ("billing_cost", "status")
        assert decision.columns == {}

    def test_rejects_the_cost_parts_as_psa_owned_too(self) -> None:
        decision = self.decide({"billing_amount": "10.00"})
        assert decision.reason == "psa_owned_field"

    def test_accepts_psa_owned_fields_on_a_purely_local_contract(self) -> None:
        decision = self.decide({"status": "cancelled"}, self.stored(psa_synced=False))
        assert decision.accepted
        assert decision.columns == {"status": "cancelled"}

    def test_rejects_a_contract_of_another_tenant_by_its_key(self) -> None:
        decision = self.decide({"notes": "x"}, contract="cw:globex:agreement:1")
        assert (decision.accepted, decision.reason) == (False, "cross_tenant")

    def test_rejects_a_contract_of_another_client(self) -> None:
        decision = self.decide({"notes": "x"}, client="200")
        assert (decision.accepted, decision.reason) == (False, "cross_tenant")

    def test_rejects_an_unknown_contract(self) -> None:
        decision = decide_edit(
            tenant_id=TENANT, client_id="100", contract_id=f"cw:{TENANT}:agreement:404", changes={"notes": "x"},
            stored=None,
        )  # fmt: skip
        assert decision.reason == "unknown_contract"

    def test_rejects_unknown_fields(self) -> None:
        decision = self.decide({"colour": "red", "notes": "x"})
        assert (decision.reason, decision.fields) == ("unknown_field", ("colour",))

    def test_seeded_fields_become_overrides_and_local_fields_are_set(self) -> None:
        decision = self.decide(
            {"name": "Ours", "end_date": "2027-12-31", "notes": "n", "tags": ["a", " a", "b"]}
        )
        assert decision.accepted
        assert decision.overrides == {"name": "Ours", "end_date": "2027-12-31"}
        assert decision.columns["end_date"] == date(2027, 12, 31)
        assert decision.columns["tags"] == ["a", "b"]
        assert decision.columns["notes"] == "n"

    def test_setting_a_seeded_field_back_to_the_psa_value_ends_its_override(self) -> None:
        stored = self.stored()
        psa_name = stored.values["psa_name"]
        stored = replace(stored, local_overrides={"name": "Ours", "description": "kept"})
        decision = self.decide({"name": psa_name, "description": "changed"}, stored)
        assert decision.accepted
        assert decision.reverted == ("name",)
        assert decision.overrides == {"description": "changed"}
        assert decision.columns["name"] == psa_name

    def test_on_a_local_contract_a_seeded_value_equal_to_the_old_psa_value_stays_an_override(self) -> None:
        stored = self.stored(psa_synced=False)
        decision = self.decide({"name": stored.values["psa_name"]}, stored)
        assert decision.reverted == ()
        assert decision.overrides == {"name": stored.values["psa_name"]}

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"start_date": "31/12/2027"}, "start_date"),
            ({"name": ""}, "name"),
            ({"name": 5}, "name"),
            ({"tags": "vip"}, "tags"),
            ({"tags": [""]}, "tags"),
            ({"reminders": [{"when": "2027-01-01"}]}, "reminders"),
            ({"description": "x" * 10_001}, "description"),
            ({"end_date": "2025-01-01"}, "end_date"),
        ],
    )
    def test_rejects_invalid_values_naming_the_field(self, changes: dict[str, object], field: str) -> None:
        decision = self.decide(changes)
        assert (decision.accepted, decision.reason, decision.fields) == (False, "invalid_value", (field,))

    def test_accepts_reminders_with_dates_and_notes(self) -> None:
        decision = self.decide({"reminders": [{"date": "2027-01-01", "note": "renew"}]})
        assert decision.columns["reminders"] == [{"date": "2027-01-01", "note": "renew"}]

    def test_every_ownership_field_is_editable_or_refused_by_class(self) -> None:
        for name in (*PSA_SEEDED, *LOCAL):
            assert self.decide({name: None}).reason in (None, "invalid_value")


class TestCatalog:
    def test_item_versions_come_from_each_item_so_one_changed_addition_is_updated_alone(self) -> None:
        rows = catalog_rows(
            make_observed(TENANT, agreement_id=1, version=at(0), additions={5: at(9), 6: at(0)})
        )
        assert [(r.kind, r.addition_id, r.psa_last_updated) for r in rows] == [
            ("agreement", None, at(0)),
            ("addition", 5, at(9)),
            ("addition", 6, at(0)),
        ]
        assert rows[1].contract_key == f"cw:{TENANT}:addition:5"
        assert rows[1].agreement_id == 1

    def test_reduce_keeps_the_newest_snapshot_per_item(self) -> None:
        old = make_observed(TENANT, version=at(1), name="old")
        new = make_observed(TENANT, version=at(2), name="new")
        assert [r.name for r in reduce_catalog([new, old])] == ["new"]

    @pytest.mark.parametrize(
        ("removed", "has_contract", "contract_version", "state"),
        [
            (T0, True, at(0), "removed"),
            (None, False, None, "new"),
            (None, True, at(-1), "updated"),
            (None, True, at(0), "synced"),
            (None, True, at(1), "synced"),
        ],
    )
    def test_state_derivation(self, removed, has_contract, contract_version, state) -> None:  # type: ignore[no-untyped-def]
        assert (
            catalog_state(
                removed_at=removed,
                item_psa_last_updated=at(0),
                contract_psa_last_updated=contract_version,
                has_contract=has_contract,
            )
            == state
        )

    def test_counts_cover_every_state(self) -> None:
        assert count_states(["new", "new", "synced"]) == {"new": 2, "updated": 0, "synced": 1, "removed": 0}


class TestPlanBatch:
    def test_sorts_messages_into_events_dead_letters_and_ignored(self) -> None:
        tenant = unique_tenant()
        record = make_record(tenant)
        select = SelectCommand.build(
            SelectData(tenant_id=tenant, client_id="100", agreement_ids=[1], requested_by="u"), source="ui"
        )
        messages = [
            as_incoming(record, CONTRACT_RECORDS),
            as_incoming(record, CONTRACT_RECORDS),  # same id again
            as_incoming(None, CONTRACT_RECORDS, value=b"{not json"),
            as_incoming(None, CONTRACT_RECORDS, value=b'{"type": "contract.record.exploded", "data": {}}'),
            as_incoming(
                None, CONTRACT_RECORDS, value=record.to_bytes().replace(b'"status":"active"', b'"status":"?"')
            ),
            as_incoming(select, SYNC_COMMANDS),
            as_incoming(make_set_auto_sync(tenant, "100", True), SYNC_COMMANDS),
            as_incoming(make_observed(tenant), PSA_AGREEMENTS),
        ]
        plan = plan_batch(messages)
        assert [a.event.type for a in plan.events] == [
            "contract.record.mapped",
            "sync.command.set_auto_sync",
            "psa.agreement.observed",
        ]
        assert [d.reason for d in plan.dead_letters] == ["malformed_json", "unknown_type", "validation_error"]
        assert plan.dead_letters[2].client == (tenant, "100")
        assert plan.ignored == 2

    def test_unreadable_commands_and_psa_events_are_skipped_and_counted_not_dead_lettered(self) -> None:
        tenant = unique_tenant()
        edit = make_edit(tenant, "100", f"cw:{tenant}:agreement:1", {"notes": "n"})
        bad_edit = edit.to_bytes().replace(b'"changes":{', b'"changes":[{').replace(b"}}", b"}]}", 1)
        messages = [
            as_incoming(None, SYNC_COMMANDS, value=b"{not json"),
            as_incoming(None, SYNC_COMMANDS, value=b'{"type": "sync.command.explode", "data": {}}'),
            as_incoming(None, SYNC_COMMANDS, value=bad_edit),
            as_incoming(None, PSA_AGREEMENTS, value=b"[]"),
            as_incoming(None, PSA_AGREEMENTS, value=b"")._replace(value=None),  # a tombstone
            as_incoming(edit, SYNC_COMMANDS),
            as_incoming(None, CONTRACT_RECORDS, value=b"{not json"),
        ]
        plan = plan_batch(messages)
        assert plan.skipped_unparseable == 5  # the mapper owns these dead letters
        assert [d.message.topic for d in plan.dead_letters] == [CONTRACT_RECORDS]  # the writer owns these
        assert [a.event.type for a in plan.events] == ["contract.command.edit"]

    def test_a_record_whose_key_names_another_tenant_is_dead_lettered(self) -> None:
        record = make_record("acme")
        forged = record.to_bytes().replace(b'"contract_key":"cw:acme:', b'"contract_key":"cw:globex:')
        plan = plan_batch([as_incoming(None, CONTRACT_RECORDS, value=forged)])
        assert plan.events == []
        assert [d.reason for d in plan.dead_letters] == ["cross_tenant"]

    def test_a_message_keyed_as_another_client_than_it_names_is_never_applied(self) -> None:
        record = make_record("acme")
        edit = make_edit("acme", "100", "cw:acme:agreement:1", {"notes": "x"})
        plan = plan_batch(
            [
                as_incoming(record, CONTRACT_RECORDS, key=b"globex:100"),
                as_incoming(edit, SYNC_COMMANDS, key=b"globex:100"),
            ]
        )
        assert plan.events == []
        assert [d.reason for d in plan.dead_letters] == ["key_mismatch"]  # the records topic is ours
        assert plan.skipped_unparseable == 1  # the mapper dead-letters commands and tells the producer

    def test_renamed_topics_are_parsed_as_their_registry_topic(self) -> None:
        plan = plan_batch(
            [as_incoming(make_record("acme"), "bench.records")], {"bench.records": CONTRACT_RECORDS}
        )
        assert len(plan.events) == 1


class TestEventsFor:
    def test_one_applied_event_per_client_and_correlation_and_rejections_name_the_fields(self) -> None:
        edit = make_edit("acme", "100", "cw:acme:agreement:1", {"status": "x"})
        decision = decide_edit(
            tenant_id="acme", client_id="100", contract_id="cw:acme:agreement:1", changes={"status": "x"},
            stored=replace(created(0), tenant_id="acme", contract_key="cw:acme:agreement:1"),
        )  # fmt: skip
        result = BatchResult(
            applied={
                ("acme", "100", None): AppliedCounts(created=2),
                ("acme", "100", "cmd-1"): AppliedCounts(updated=1, unchanged=1),
            },
            last_synced_at={("acme", "100"): T0},
            edits=[EditOutcome(edit, decision)],
        )
        events = events_for(result, [])
        applied = [e for e in events if e.type == "sync.contracts.applied"]
        assert [(e.correlationid, e.data.created, e.data.updated) for e in applied] == [
            (None, 2, 0),
            ("cmd-1", 0, 1),
        ]  # type: ignore[attr-defined]
        rejected = [e for e in events if e.type == "sync.edit.rejected"]
        assert rejected[0].data.fields == ["status"]  # type: ignore[attr-defined]
        assert rejected[0].correlationid == str(edit.id)


class TestOutbox:
    def test_dead_letters_come_first_with_their_headers_then_the_events_in_order(self) -> None:
        tenant = unique_tenant()
        poison = as_incoming(None, CONTRACT_RECORDS, value=b"{not json")
        letter = DeadLetter(poison, "malformed_json", "bad", (tenant, "100"))
        result = BatchResult(
            applied={(tenant, "100", None): AppliedCounts(created=1)}, last_synced_at={(tenant, "100"): T0}
        )
        events = events_for(result, [letter])
        messages = outbox_messages([letter], events, OutboxTopics(events="ev", deadletter="dlq"))
        assert [m.topic for m in messages] == ["dlq", "ev", "ev"]
        assert messages[0].value == b"{not json"
        headers = dict(messages[0].headers)
        assert headers[DLQ_REASON] == b"malformed_json"
        assert headers[DLQ_STAGE] == b"writer.apply"
        assert headers[DLQ_SOURCE_OFFSET] == str(poison.offset).encode()
        assert [m.value for m in messages[1:]] == [e.to_bytes() for e in events]
        assert [m.key for m in messages[1:]] == [f"{tenant}:100".encode()] * 2
        assert len({m.id for m in messages}) == 3

    def test_the_failure_event_of_the_same_dead_letter_repeats_its_id(self) -> None:
        poison = as_incoming(None, CONTRACT_RECORDS, value=b"{not json")
        letter = DeadLetter(poison, "malformed_json", "bad", ("acme", "100"))
        first, again = events_for(BatchResult(), [letter]), events_for(BatchResult(), [letter])
        other = events_for(
            BatchResult(), [replace(letter, message=poison._replace(offset=poison.offset + 1))]
        )
        assert [e.type for e in first] == ["sync.failed"]
        assert first[0].id == again[0].id
        assert other[0].id != first[0].id


def test_next_offsets_commit_past_the_highest_offset_per_partition() -> None:
    messages = [as_incoming(make_record("acme"), "t", partition=p) for p in (0, 1, 0)]
    offsets = next_offsets(messages)
    assert {tp.partition: off for tp, off in offsets.items()} == {
        0: messages[2].offset + 1,
        1: messages[1].offset + 1,
    }


def test_the_database_trigger_guards_exactly_the_psa_owned_columns() -> None:
    path = Path(MIGRATIONS_DIR) / "versions" / "0001_initial.py"
    spec = importlib.util.spec_from_file_location("initial_revision", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert tuple(module._GUARDED) == PSA_OWNED_COLUMNS
