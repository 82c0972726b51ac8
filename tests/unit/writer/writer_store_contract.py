"""The contract of the writer's store port (`services.writer.store_port.WriterStore`).

One suite, run against the in-memory fake of the unit tests (tests/unit/writer/test_writer_store_contract_in_memory.py)
and against `AsyncPostgresStore` on a real PostgreSQL (tests/integration/writer/test_writer_store_contract_postgres.py),
so the writer's orchestration tests on the fake hold for the real store. A subclass provides the
`store` fixture; every test uses its own tenant and outbox topics.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from writer_factories import T0, as_incoming, make_record, make_retired, unique_tenant

from schemas.topics import CONTRACT_RECORDS
from services.writer.handlers import AppliedCounts, BatchPlan, BatchResult, OutboxTopics, plan_batch
from services.writer.store import StoreRejected
from services.writer.store_port import WriterStore


def plan(*events: Any) -> BatchPlan:
    return plan_batch([as_incoming(e, CONTRACT_RECORDS) for e in events])


def topics() -> OutboxTopics:
    run = uuid.uuid4().hex[:10]
    return OutboxTopics(events=f"contract.events.{run}", deadletter=f"contract.dlq.{run}")


def counts(result: BatchResult, tenant: str) -> AppliedCounts:
    total = AppliedCounts()
    for (tenant_id, _, _), c in result.applied.items():
        if tenant_id == tenant:
            total.created += c.created
            total.updated += c.updated
            total.unchanged += c.unchanged
            total.retired += c.retired
    return total


def types(messages: Any) -> list[str]:
    return [json.loads(m.value)["type"] for m in messages if m.value is not None]


class WriterStoreContract:
    """What every `WriterStore` guarantees."""

    async def test_a_new_record_is_created_then_unchanged_then_updated_by_a_newer_version(
        self, store: WriterStore
    ) -> None:
        t = unique_tenant()
        first = await store.apply(plan(make_record(t, agreement_id=1)))
        same = await store.apply(plan(make_record(t, agreement_id=1)))
        newer = await store.apply(
            plan(make_record(t, agreement_id=1, version=T0 + timedelta(minutes=1), status="expired"))
        )
        assert counts(first, t) == AppliedCounts(created=1)
        assert counts(same, t) == AppliedCounts(unchanged=1)
        assert counts(newer, t) == AppliedCounts(updated=1)

    async def test_an_older_version_changes_nothing(self, store: WriterStore) -> None:
        t = unique_tenant()
        await store.apply(plan(make_record(t, agreement_id=1, version=T0 + timedelta(minutes=5))))
        older = await store.apply(plan(make_record(t, agreement_id=1, version=T0, status="cancelled")))
        assert counts(older, t) == AppliedCounts(unchanged=1)

    async def test_the_same_version_with_another_digest_updates_and_with_the_same_digest_does_not(
        self, store: WriterStore
    ) -> None:
        t = unique_tenant()
        await store.apply(plan(make_record(t, agreement_id=1, psa_digest="a" * 16)))
        same = await store.apply(plan(make_record(t, agreement_id=1, psa_digest="a" * 16)))
        other = await store.apply(plan(make_record(t, agreement_id=1, psa_digest="b" * 16, status="expired")))
        assert counts(same, t) == AppliedCounts(unchanged=1)
        assert counts(other, t) == AppliedCounts(updated=1)

    async def test_an_event_applied_before_is_skipped_as_a_duplicate(self, store: WriterStore) -> None:
        t = unique_tenant()
        events = [make_record(t, agreement_id=1), make_record(t, agreement_id=2)]
        first = await store.apply(plan(*events))
        again = await store.apply(plan(*events))
        assert (first.fresh, first.duplicates) == (2, 0)
        assert (again.fresh, again.duplicates) == (0, 2)
        assert counts(again, t) == AppliedCounts()

    async def test_a_retired_contract_is_counted_retired_once(self, store: WriterStore) -> None:
        t = unique_tenant()
        await store.apply(plan(make_record(t, agreement_id=1)))
        retired = await store.apply(plan(make_retired(t, agreement_id=1)))
        again = await store.apply(plan(make_retired(t, agreement_id=1)))
        assert counts(retired, t) == AppliedCounts(retired=1)
        assert counts(again, t) == AppliedCounts(unchanged=1)

    async def test_a_refused_record_fails_the_whole_plan_and_applies_nothing_of_it(
        self, store: WriterStore
    ) -> None:
        t = unique_tenant()
        good = make_record(t, agreement_id=1)
        with pytest.raises(StoreRejected):
            await store.apply(plan(good, make_record(t, agreement_id=2, name="bad\x00name")))
        alone = await store.apply(plan(good))
        assert (alone.fresh, counts(alone, t)) == (1, AppliedCounts(created=1))

    async def test_the_outbox_holds_a_batch_messages_until_they_are_deleted(self, store: WriterStore) -> None:
        t, out = unique_tenant(), topics()
        result = await store.apply(plan(make_record(t, agreement_id=1)), out)
        assert "sync.contracts.applied" in types(result.outbox)
        assert {m.topic for m in result.outbox} == {out.events}
        assert await store.read_outbox([out.events, out.deadletter]) == result.outbox
        ids = [m.id for m in result.outbox]
        assert await store.delete_outbox(ids) == len(ids)
        assert await store.delete_outbox(ids) == 0
        assert await store.read_outbox([out.events, out.deadletter]) == []

    async def test_without_outbox_topics_nothing_is_written_to_the_outbox(self, store: WriterStore) -> None:
        result = await store.apply(plan(make_record(unique_tenant(), agreement_id=1)))
        assert result.outbox == []

    async def test_outbox_rows_a_plan_names_as_done_are_deleted_with_it_and_the_rest_read_oldest_first(
        self, store: WriterStore
    ) -> None:
        t, out = unique_tenant(), topics()
        first = await store.apply(plan(make_record(t, agreement_id=1)), out)
        second = await store.apply(plan(make_record(t, agreement_id=2)), out)
        assert await store.read_outbox([out.events]) == [*first.outbox, *second.outbox]
        assert await store.read_outbox([out.deadletter]) == []
        done = plan(make_record(t, agreement_id=3))
        done.outbox_done = [m.id for m in first.outbox]
        third = await store.apply(done, out)
        assert await store.read_outbox([out.events]) == [*second.outbox, *third.outbox]

    async def test_a_dead_letter_of_the_plan_is_written_to_the_dead_letter_topic(
        self, store: WriterStore
    ) -> None:
        t, out = unique_tenant(), topics()
        broken = as_incoming(None, CONTRACT_RECORDS, value=b"{not json", key=f"{t}:100".encode())
        result = await store.apply(plan_batch([broken, as_incoming(make_record(t), CONTRACT_RECORDS)]), out)
        assert [m.topic for m in result.outbox if m.topic == out.deadletter] == [out.deadletter]
        assert [m.value for m in result.outbox if m.topic == out.deadletter] == [b"{not json"]
        assert counts(result, t) == AppliedCounts(created=1)

    async def test_prune_and_ping_answer(self, store: WriterStore) -> None:
        assert await store.prune_processed(3650) >= 0
        assert await store.ping() is True
