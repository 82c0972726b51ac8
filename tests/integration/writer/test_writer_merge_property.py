"""The SQL merge of the writer's store and the Python reference `merge_contract` agree.

Random sequences of batches (mapped records with random versions and values, several records of
the same contract in one batch, local edits, retirements) go through the real store on PostgreSQL
and through `merge_contract` (plus `decide_edit` for edits and the retire rule) on a Python model;
after every batch each contract row must equal the model's, and the created/updated/unchanged
counts must agree. A batch's records are applied to the model one by one in offset order, so the
test also checks that the store's per-batch reduction (newest version wins, the later one on a tie)
leaves the same row as applying every record in turn.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from writer_factories import T0, as_incoming, make_edit, make_record, make_retired, unique_tenant

from schemas.ownership import LOCAL, PSA_OWNED_COLUMNS, PSA_SEEDED
from schemas.topics import CONTRACT_RECORDS, SYNC_COMMANDS
from services.writer.apply import (
    SYNC_COMPARED_COLUMNS,
    StoredContract,
    contract_row,
    decide_edit,
    merge_contract,
)
from services.writer.handlers import BatchResult, plan_batch
from services.writer.store import PostgresStore, get_contract

pytestmark = pytest.mark.integration

CLIENT = "100"
ITEMS = (1, 2)  # two agreements: enough for batches that touch one contract twice and others once
COMPARED = (
    *SYNC_COMPARED_COLUMNS,
    *PSA_SEEDED,
    *(name for name in LOCAL if name in ("notes", "owner")),
    "psa_synced",
    "removed_in_psa_at",
)

mapped_records = st.fixed_dictionaries(
    {
        "op": st.just("map"),
        "item": st.sampled_from(ITEMS),
        "version": st.integers(0, 3),
        "status": st.sampled_from(["active", "expired", "cancelled"]),
        "amount": st.sampled_from(["1500.00", "99.50", "0.00"]),
        "name": st.sampled_from(["Managed", "Managed v2"]),
        "description": st.sampled_from([None, "Backup", "Backup and monitoring"]),
        "start_date": st.sampled_from([date(2026, 1, 1), date(2026, 2, 1)]),
    }
)
edits = st.fixed_dictionaries(
    {
        "op": st.just("edit"),
        "item": st.sampled_from(ITEMS),
        "changes": st.dictionaries(
            st.sampled_from(["name", "description", "notes", "owner"]),
            st.sampled_from(["Ours", "Renamed locally", "jane"]),
            min_size=1,
            max_size=3,
        ),
    }
)
retirements = st.fixed_dictionaries(
    {"op": st.just("retire"), "item": st.sampled_from(ITEMS), "minute": st.integers(0, 5)}
)
batches = st.one_of(
    st.lists(mapped_records, min_size=1, max_size=4),
    edits.map(lambda e: [e]),
    retirements.map(lambda r: [r]),
    st.tuples(mapped_records, retirements).map(list),
)


class ReferenceStore:
    """The Python model: one `StoredContract` per key, changed only through the reference rules."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.rows: dict[str, StoredContract] = {}

    def merge(self, event: Any) -> str:
        row = contract_row(event)
        outcome, values = merge_contract(self.rows.get(row.contract_key), row)
        if outcome != "unchanged":
            self.rows[row.contract_key] = StoredContract(
                contract_key=row.contract_key,
                tenant_id=row.tenant_id,
                client_id=row.client_id,
                psa_synced=values["psa_synced"],
                psa_last_updated=values["psa_last_updated"],
                values=values,
                local_overrides=values["local_overrides"],
                removed_in_psa_at=values["removed_in_psa_at"],
            )
        return outcome

    def retire(self, key: str, observed_at: Any) -> None:
        stored = self.rows.get(key)
        if stored is not None and stored.removed_in_psa_at is None:
            values = {**stored.values, "removed_in_psa_at": observed_at}
            self.rows[key] = replace(stored, values=values, removed_in_psa_at=observed_at)

    def edit(self, key: str, changes: dict[str, Any]) -> None:
        stored = self.rows.get(key)
        decision = decide_edit(
            tenant_id=self.tenant, client_id=CLIENT, contract_id=key, changes=changes, stored=stored
        )
        if decision.accepted and stored is not None:
            kept = {k: v for k, v in stored.local_overrides.items() if k not in decision.reverted}
            overrides = {**kept, **decision.overrides}
            values = {**stored.values, **decision.columns, "local_overrides": overrides}
            self.rows[key] = replace(stored, values=values, local_overrides=overrides)


def _key(tenant: str, item: int) -> str:
    return f"cw:{tenant}:agreement:{item}"


def _event(tenant: str, op: dict[str, Any]) -> Any:
    if op["op"] == "map":
        return make_record(
            tenant,
            CLIENT,
            op["item"],
            version=T0 + timedelta(minutes=op["version"]),
            status=op["status"],
            amount=op["amount"],
            name=op["name"],
            description=op["description"],
            start_date=op["start_date"],
        )
    if op["op"] == "edit":
        return make_edit(tenant, CLIENT, _key(tenant, op["item"]), op["changes"])
    return make_retired(tenant, CLIENT, op["item"], observed_at=T0 + timedelta(minutes=op["minute"]))


def _apply_to_reference(
    model: ReferenceStore, tenant: str, batch: list[dict[str, Any]], events: list[Any]
) -> dict[str, int]:
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for op, event in zip(batch, events, strict=True):
        if op["op"] == "map":
            counts[model.merge(event)] += 1
        elif op["op"] == "edit":
            model.edit(_key(tenant, op["item"]), op["changes"])
        else:
            model.retire(_key(tenant, op["item"]), event.data.observed_at)
    return counts


def _stored_counts(result: BatchResult) -> dict[str, int]:
    totals = {"created": 0, "updated": 0, "unchanged": 0}
    for counts in result.applied.values():
        totals["created"] += counts.created
        totals["updated"] += counts.updated
        totals["unchanged"] += counts.unchanged
    return totals


def _comparable(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    picked = {name: values.get(name) for name in COMPARED}
    picked["local_overrides"] = sorted((values.get("local_overrides") or {}).items())
    return picked


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch_sequence=st.lists(batches, min_size=1, max_size=6))
def test_the_sql_merge_leaves_the_same_rows_as_the_python_reference_for_any_record_sequence(
    store: PostgresStore, batch_sequence: list[list[dict[str, Any]]]
) -> None:
    tenant = unique_tenant("merge")
    model = ReferenceStore(tenant)
    for batch in batch_sequence:
        events = [_event(tenant, op) for op in batch]
        topics = [SYNC_COMMANDS if op["op"] == "edit" else CONTRACT_RECORDS for op in batch]
        result = store.apply(plan_batch([as_incoming(e, t) for e, t in zip(events, topics, strict=True)]))
        expected_counts = _apply_to_reference(model, tenant, batch, events)
        mapped_items = [op["item"] for op in batch if op["op"] == "map"]
        retired_items = {op["item"] for op in batch if op["op"] == "retire"}
        if len(set(mapped_items)) == len(mapped_items) and not retired_items:
            # one record per contract: the store's counts are the reference outcomes
            assert _stored_counts(result) == expected_counts
        for item in ITEMS:
            key = _key(tenant, item)
            reference = model.rows.get(key)
            actual = _comparable(get_contract(store.engine, key))
            assert actual == _comparable(dict(reference.values) if reference else None), (
                f"after batch {batch}: contract {key} differs from the reference"
            )


def test_the_compared_columns_cover_every_column_a_sync_or_an_edit_writes() -> None:
    written = {*SYNC_COMPARED_COLUMNS, *PSA_SEEDED, *PSA_OWNED_COLUMNS, "psa_synced", "removed_in_psa_at"}
    assert written <= set(COMPARED)
