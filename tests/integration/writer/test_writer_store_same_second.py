"""Two changes within one ConnectWise `lastUpdated` second, against PostgreSQL: the catalog shows the
second as `updated` until a record with its digest arrives, and that record updates the contract."""

from __future__ import annotations

from typing import Any

from writer_factories import as_incoming, at, make_observed, make_record, unique_tenant

from schemas.psa_digest import agreement_digest
from schemas.topics import CONTRACT_RECORDS, PSA_AGREEMENTS
from services.writer.handlers import BatchResult, plan_batch
from services.writer.store import PostgresStore, get_contract, list_catalog


def apply(store: PostgresStore, *events: Any) -> BatchResult:
    topics = {"contract.record.mapped": CONTRACT_RECORDS, "psa.agreement.observed": PSA_AGREEMENTS}
    return store.apply(plan_batch([as_incoming(e, topics[e.type]) for e in events]))


def test_a_second_change_in_the_same_second_is_updated_in_the_catalog_until_its_record_is_applied(
    store: PostgresStore,
) -> None:
    tenant = unique_tenant()
    key = f"cw:{tenant}:agreement:1"

    def state() -> str:
        (row,) = list_catalog(store.engine, tenant, "100")
        return str(row["state"])

    first = make_observed(tenant, version=at(5), observed_at=at(6), name="First")
    apply(store, first)
    apply(store, make_record(tenant, version=at(5), name="First", psa_digest=agreement_digest(first.data)))
    assert state() == "synced"

    second = make_observed(tenant, version=at(5), observed_at=at(7), name="Second")  # same version
    apply(store, second)
    assert state() == "updated"

    result = apply(
        store, make_record(tenant, version=at(5), name="Second", psa_digest=agreement_digest(second.data))
    )
    assert sum(c.updated for c in result.applied.values()) == 1
    row = get_contract(store.engine, key)
    assert row is not None and row["name"] == "Second" and row["psa_digest"] == agreement_digest(second.data)
    assert state() == "synced"

    # the first snapshot delivered again cannot replace the second in the catalog: it was read earlier
    apply(store, first)
    assert state() == "synced"
