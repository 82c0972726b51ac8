"""The writer's PostgreSQL store against a real database: upsert rules, idempotency, catalog, edits."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from writer_factories import (
    as_incoming,
    at,
    make_addition_removed,
    make_agreement_removed,
    make_edit,
    make_observed,
    make_record,
    make_retired,
    make_set_auto_sync,
    unique_tenant,
)

from schemas.topics import CONTRACT_RECORDS, PSA_AGREEMENTS, SYNC_COMMANDS
from services.writer.apply import catalog_state
from services.writer.handlers import BatchResult, plan_batch
from services.writer.store import PostgresStore, get_contract, list_catalog, list_contracts, sync_settings

_TOPICS = {
    "contract.record.mapped": CONTRACT_RECORDS,
    "contract.record.retired": CONTRACT_RECORDS,
    "psa.agreement.observed": PSA_AGREEMENTS,
    "psa.agreement.removed": PSA_AGREEMENTS,
    "psa.addition.removed": PSA_AGREEMENTS,
    "contract.command.edit": SYNC_COMMANDS,
    "sync.command.set_auto_sync": SYNC_COMMANDS,
}


def apply(store: PostgresStore, *events: Any) -> BatchResult:
    return store.apply(plan_batch([as_incoming(e, _TOPICS[e.type]) for e in events]))


def contract(store: PostgresStore, tenant: str, kind: str = "agreement", item: int = 1) -> dict[str, Any]:
    row = get_contract(store.engine, f"cw:{tenant}:{kind}:{item}")
    assert row is not None
    return row


def snapshot(store: PostgresStore, tenant: str, client: str = "100") -> tuple[Any, ...]:
    return (
        list_contracts(store.engine, tenant, client),
        list_catalog(store.engine, tenant, client),
        sync_settings(store.engine, tenant, client),
    )


class TestIdempotency:
    def test_applying_the_same_events_twice_leaves_the_same_database(self, store: PostgresStore) -> None:
        tenant = unique_tenant()
        events = [
            make_record(tenant, agreement_id=1),
            make_record(tenant, agreement_id=1, addition_id=5),
            make_observed(tenant, agreement_id=1, additions={5: at(0)}),
            make_edit(tenant, "100", f"cw:{tenant}:agreement:1", {"notes": "hello", "name": "Ours"}),
            make_set_auto_sync(tenant, "100", True),
        ]
        first = apply(store, *events)
        before = snapshot(store, tenant)
        second = apply(store, *events)
        assert first.fresh == 5 and first.duplicates == 0
        assert second.fresh == 0 and second.duplicates == 5
        assert snapshot(store, tenant) == before

    def test_counts_created_updated_and_unchanged_per_client(self, store: PostgresStore) -> None:
        tenant = unique_tenant()
        first = apply(store, make_record(tenant, agreement_id=1), make_record(tenant, agreement_id=2))
        again = apply(
            store,
            make_record(tenant, agreement_id=1),  # same content, new event id
            make_record(tenant, agreement_id=2, version=at(1), status="expired"),
        )
        assert first.applied[(tenant, "100", None)].created == 2
        counts = again.applied[(tenant, "100", None)]
        assert (counts.created, counts.updated, counts.unchanged) == (0, 1, 1)


class TestUpsertRules:
    def test_an_older_version_after_a_newer_one_is_ignored(self, store: PostgresStore) -> None:
        tenant = unique_tenant()
        apply(store, make_record(tenant, version=at(10), status="active", amount="100.00"))
        result = apply(store, make_record(tenant, version=at(5), status="cancelled", amount="1.00"))
        row = contract(store, tenant)
        assert (row["status"], row["billing_amount"]) == ("active", Decimal("100.000000"))
        assert row["psa_last_updated"] == at(10)
        assert result.applied[(tenant, "100", None)].unchanged == 1

    def test_the_newest_record_of_a_batch_wins_whatever_its_position(self, store: PostgresStore) -> None:
        tenant = unique_tenant()
        apply(store, make_record(tenant, version=at(3), status="expired"), make_record(tenant, version=at(1)))
        assert contract(store, tenant)["status"] == "expired"

    def test_a_seeded_field_override_survives_later_syncs(self, store: PostgresStore) -> None:
        tenant = unique_tenant()
        apply(store, make_record(tenant, name="PSA name", end_date=date(2026, 12, 31)))
        apply(store, make_edit(tenant, "100", f"cw:{tenant}:agreement:1", {"name": "Our name"}))
        apply(store, make_record(tenant, version=at(1), name="PSA name v2", end_date=date(2027, 12, 31)))
        apply(store, make_record(tenant, version=at(2), name="PSA name v3", end_date=date(2028, 12, 31)))
        row = contract(store, tenant)
        assert row["name"] == "Our name"
        assert row["psa_name"] == "PSA name v3"
        assert row["local_overrides"] == {"name": "Our name"}
        assert row["end_date"] == row["psa_end_date"] == date(2028, 12, 31)  # not overridden: follows the PSA

    def test_local_fields_are_never_touched_by_a_sync(self, store: PostgresStore) -> None:
        tenant = unique_tenant()
        apply(store, make_record(tenant))
        changes = {
            "notes": "n",
            "owner": "alice",
            "impact": "high",
            "tags": ["vip"],
            "reminders": [{"date": "2027-01-01"}],
        }
        apply(store, make_edit(tenant, "100", f"cw:{tenant}:agreement:1", changes))
        apply(store, make_record(tenant, version=at(1), status="expired", amount="2.00", description="d2"))
        row = contract(store, tenant)
        assert (row["notes"], row["owner"], row["impact"], row["tags"], row["reminders"]) == (
            "n",
            "alice",
            "high",
            ["vip"],
            [{"date": "2027-01-01"}],
        )
        assert row["status"] == "expired"

    def test_a_retired_contract_is_kept_and_marked(self, store: PostgresStore) -> None:
        tenant = unique_tenant()
        apply(store, make_record(tenant))
        result = apply(store, make_retired(tenant, observed_at=at(30)))
        row = contract(store, tenant)
        assert row["removed_in_psa_at"] == at(30)
        assert row["status"] == "active" and row["psa_synced"] is True
        assert result.applied[(tenant, "100", None)].retired == 1

    def test_a_record_naming_the_command_carries_its_correlation_id_into_the_counts(
        self, store: PostgresStore
    ) -> None:
        tenant = unique_tenant()
        result = apply(store, make_record(tenant, correlationid="cmd-42"))
        assert result.applied[(tenant, "100", "cmd-42")].created == 1

    def test_outcomes_are_counted_once_per_record_across_replays_versions_clients_and_retirements(
        self, store: PostgresStore
    ) -> None:
        tenant = unique_tenant()
        replayed = make_record(tenant, agreement_id=1)
        apply(store, replayed, make_record(tenant, agreement_id=2), make_record(tenant, agreement_id=4))
        result = apply(
            store,
            replayed,  # already applied: skipped, counted nowhere
            make_record(tenant, agreement_id=2, version=at(1), status="expired"),  # updated
            make_record(tenant, agreement_id=3, version=at(1)),  # superseded by the next: unchanged
            make_record(tenant, agreement_id=3, version=at(2), name="v2"),  # created
            make_record(tenant, "200", agreement_id=7, correlationid="cmd-1"),  # created, other client
            make_record(tenant, agreement_id=4),  # equal to the stored row: unchanged
            make_retired(tenant, agreement_id=4, observed_at=at(5)),  # after its record: retired
            make_retired(tenant, agreement_id=3, observed_at=at(5)),
            make_record(tenant, agreement_id=3, version=at(3), name="v3"),  # after the retire: wins
        )
        assert (result.fresh, result.duplicates) == (8, 1)
        counts = result.applied[(tenant, "100", None)]
        assert (counts.created, counts.updated, counts.unchanged, counts.retired) == (1, 1, 3, 1)
        other = result.applied[(tenant, "200", "cmd-1")]
        assert (other.created, other.updated, other.unchanged, other.retired) == (1, 0, 0, 0)
        assert set(result.last_synced_at) == {(tenant, "100"), (tenant, "200")}
        assert contract(store, tenant, item=3)["name"] == "v3"
        assert contract(store, tenant, item=3)["removed_in_psa_at"] is None
        assert contract(store, tenant, item=4)["removed_in_psa_at"] == at(5)


class TestEdits:
    def test_a_psa_owned_edit_is_rejected_and_nothing_of_it_is_applied(self, store: PostgresStore) -> None:
        tenant = unique_tenant()
        apply(store, make_record(tenant, status="active"))
        edit = make_edit(
            tenant, "100", f"cw:{tenant}:agreement:1", {"status": "cancelled", "notes": "sneaky"}
        )
        result = apply(store, edit)
        row = contract(store, tenant)
        assert (row["status"], row["notes"]) == ("active", None)
        decision = result.edits[0].decision
        assert (decision.reason, decision.fields) == ("psa_owned_field", ("status",))

    def test_an_edit_of_another_tenants_or_clients_contract_is_refused(self, store: PostgresStore) -> None:
        tenant, other = unique_tenant(), unique_tenant()
        apply(store, make_record(other))
        cross_tenant = make_edit(tenant, "100", f"cw:{other}:agreement:1", {"notes": "x"})
        cross_client = make_edit(other, "999", f"cw:{other}:agreement:1", {"notes": "x"})
        result = apply(store, cross_tenant, cross_client)
        assert [o.decision.reason for o in result.edits] == ["cross_tenant", "cross_tenant"]
        assert {r[1] for r in result.rejected_events} == {"cross_tenant"}
        assert contract(store, other)["notes"] is None


class TestCatalogAndSettings:
    def test_catalog_states_follow_syncs_and_removals(self, store: PostgresStore) -> None:
        tenant = unique_tenant()
        result = apply(store, make_observed(tenant, agreement_id=1, additions={5: at(0), 6: at(0)}))
        states = {r["contract_key"]: r["state"] for r in list_catalog(store.engine, tenant, "100")}
        assert set(states.values()) == {"new"}
        assert result.catalog_changed[(tenant, "100")]["new"] == 3

        apply(store, make_record(tenant, agreement_id=1), make_record(tenant, agreement_id=1, addition_id=5))
        apply(store, make_observed(tenant, agreement_id=1, additions={5: at(7), 6: at(0)}))
        apply(store, make_addition_removed(tenant, "100", 1, 6, observed_at=at(20)))
        states = {r["contract_key"]: r["state"] for r in list_catalog(store.engine, tenant, "100")}
        assert states == {
            f"cw:{tenant}:agreement:1": "synced",
            f"cw:{tenant}:addition:5": "updated",
            f"cw:{tenant}:addition:6": "removed",
        }
        apply(store, make_agreement_removed(tenant, "100", 1, observed_at=at(30)))
        assert {r["state"] for r in list_catalog(store.engine, tenant, "100")} == {"removed"}

    def test_the_state_view_agrees_with_the_pure_rule(self, store: PostgresStore) -> None:
        tenant = unique_tenant()
        apply(store, make_observed(tenant, agreement_id=1, version=at(5), additions={5: at(5), 6: at(5)}))
        apply(
            store,
            make_record(tenant, agreement_id=1, version=at(5)),
            make_record(tenant, agreement_id=1, addition_id=5, version=at(1)),
        )
        for row in list_catalog(store.engine, tenant, "100"):
            expected = catalog_state(
                removed_at=row["removed_at"],
                item_psa_last_updated=row["psa_last_updated"],
                contract_psa_last_updated=row["contract_psa_last_updated"],
                has_contract=row["contract_psa_last_updated"] is not None,
                item_psa_digest=row["psa_digest"],
                contract_psa_digest=row["contract_psa_digest"],
            )
            assert row["state"] == expected

    def test_auto_sync_flag_and_last_synced_are_kept_per_client(self, store: PostgresStore) -> None:
        tenant = unique_tenant()
        apply(store, make_set_auto_sync(tenant, "100", True, time=at(1)))
        # applied later (offset order), though its sender's clock says earlier: it wins, as in the
        # mapper and the poller (one ordering rule everywhere)
        apply(store, make_set_auto_sync(tenant, "100", False, time=at(0)))
        assert sync_settings(store.engine, tenant, "100")["auto_sync"] is False  # type: ignore[index]
        apply(store, make_set_auto_sync(tenant, "100", True, time=at(-60)))
        assert sync_settings(store.engine, tenant, "100")["auto_sync"] is True  # type: ignore[index]
        result = apply(store, make_record(tenant))
        settings = sync_settings(store.engine, tenant, "100")
        assert settings is not None
        assert settings["last_synced_at"] == result.last_synced_at[(tenant, "100")]
        assert settings["last_status"] == "ok"


def test_the_database_refuses_a_value_the_schema_allows_and_the_store_says_so(store: PostgresStore) -> None:
    from services.writer.store import StoreRejected

    tenant = unique_tenant()
    with pytest.raises(StoreRejected):
        apply(store, make_record(tenant, name="nul\x00byte"))
    assert get_contract(store.engine, f"cw:{tenant}:agreement:1") is None


def test_store_reports_an_unreachable_database_as_unavailable() -> None:
    from services.writer.store import StoreOptions, StoreUnavailable

    store = PostgresStore("postgresql+psycopg://postgres@127.0.0.1:1/none", StoreOptions(connect_timeout_s=1))
    try:
        with pytest.raises(StoreUnavailable):
            apply(store, make_record(unique_tenant()))
    finally:
        store.close()


def test_pruning_forgets_only_event_ids_older_than_the_retention(store: PostgresStore) -> None:
    tenant = unique_tenant()
    old, recent = make_record(tenant, agreement_id=1), make_record(tenant, agreement_id=2)
    apply(store, old, recent)
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE processed_events SET processed_at = now() - interval '30 days' WHERE event_id = %(id)s",
            {"id": old.id},
        )
    assert store.prune_processed(14) >= 1
    replay = apply(store, old, recent)
    assert (replay.fresh, replay.duplicates) == (1, 1)  # the pruned id is applied again (as unchanged)
    assert replay.applied[(tenant, "100", None)].unchanged == 1


def test_a_refused_row_is_described_by_sqlstate_and_constraint_never_by_its_data(
    store: PostgresStore, migrated_url: str
) -> None:
    """PostgreSQL's detail ("Failing row contains (...)") would carry the row into logs, the
    `cs-dlq-error` header and `sync.failed`: the store names the SQLSTATE and constraint instead."""
    import psycopg

    from services.writer.store import StoreRejected, psycopg_conninfo

    tenant = unique_tenant()
    constraint = f"ck_test_{tenant}"
    dsn = psycopg_conninfo(migrated_url)  # the owner alters the table; the writer's role cannot
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"ALTER TABLE contracts ADD CONSTRAINT {constraint} "  # test-only, dropped below
            f"CHECK (tenant_id <> '{tenant}' OR name <> 'secret-customer-name') NOT VALID"
        )
    try:
        with pytest.raises(StoreRejected) as refused:
            apply(store, make_record(tenant, name="secret-customer-name"))
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE contracts DROP CONSTRAINT {constraint}")
    text = str(refused.value)
    assert "SQLSTATE 23514" in text and constraint in text and "table contracts" in text
    assert "secret-customer-name" not in text and "Failing row" not in text
    assert refused.value.error_class == "CheckViolation"
