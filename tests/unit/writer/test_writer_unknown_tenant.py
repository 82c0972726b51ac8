"""The writer applies nothing for a tenant nobody configured (docs/design.md#ground-rules, docs/chaos.md finding
2): its contract records are dead-lettered (`unknown_tenant`) and answered with `sync.failed`; its
commands and PSA events are skipped (the mapper dead-letters and rejects them)."""

from __future__ import annotations

from writer_factories import (
    as_incoming,
    make_agreement_removed,
    make_edit,
    make_observed,
    make_record,
    make_retired,
    make_set_auto_sync,
)

from schemas.events import SyncFailed
from schemas.topics import CONTRACT_RECORDS, DLQ_REASON, PSA_AGREEMENTS, SYNC_COMMANDS
from services.writer.handlers import (
    BatchResult,
    OutboxTopics,
    events_for,
    outbox_messages,
    plan_batch,
)

GHOST = "ghost-tenant"
CONFIGURED = frozenset({"acme"})


def test_commands_and_psa_events_of_an_unconfigured_tenant_are_skipped_not_applied() -> None:
    messages = [
        as_incoming(make_set_auto_sync(GHOST, "100", True), SYNC_COMMANDS),
        as_incoming(make_edit(GHOST, "100", f"cw:{GHOST}:agreement:1", {"notes": "x"}), SYNC_COMMANDS),
        as_incoming(make_observed(GHOST), PSA_AGREEMENTS),
        as_incoming(make_agreement_removed(GHOST), PSA_AGREEMENTS),
    ]
    plan = plan_batch(messages, tenants=CONFIGURED)
    assert plan.events == []  # no client_sync_settings row, no edit, no catalog row
    assert plan.dead_letters == []  # the mapper owns these dead letters: one per bad message
    assert plan.skipped_unparseable == len(messages)


def test_contract_records_of_an_unconfigured_tenant_are_dead_lettered_and_answered() -> None:
    mapped, retired = make_record(GHOST), make_retired(GHOST)
    plan = plan_batch(
        [as_incoming(mapped, CONTRACT_RECORDS), as_incoming(retired, CONTRACT_RECORDS)], tenants=CONFIGURED
    )
    assert plan.events == []
    assert [(d.reason, d.client) for d in plan.dead_letters] == [
        ("unknown_tenant", (GHOST, "100")),
        ("unknown_tenant", (GHOST, "100")),
    ]
    assert [d.event_id for d in plan.dead_letters] == [str(mapped.id), str(retired.id)]

    events = events_for(BatchResult(), plan.dead_letters)
    failed = [e for e in events if isinstance(e, SyncFailed)]
    assert len(failed) == len(events) == 2
    assert {(e.data.tenant_id, e.data.error_code) for e in failed} == {(GHOST, "unknown_tenant")}
    outbox = outbox_messages(plan.dead_letters, events, OutboxTopics("events", "dlq"))
    letters = [m for m in outbox if m.topic == "dlq"]
    assert [dict(m.headers)[DLQ_REASON] for m in letters] == [b"unknown_tenant", b"unknown_tenant"]
    assert [m.value for m in letters] == [mapped.to_bytes(), retired.to_bytes()]  # the original bytes


def test_configured_tenants_are_applied_as_before_with_the_registry_on() -> None:
    messages = [
        as_incoming(make_record("acme"), CONTRACT_RECORDS),
        as_incoming(make_set_auto_sync("acme", "100", True), SYNC_COMMANDS),
        as_incoming(make_observed("acme"), PSA_AGREEMENTS),
    ]
    plan = plan_batch(messages, tenants=CONFIGURED)
    assert [a.event.type for a in plan.events] == [
        "contract.record.mapped",
        "sync.command.set_auto_sync",
        "psa.agreement.observed",
    ]
    assert plan.dead_letters == [] and plan.skipped_unparseable == 0


def test_without_a_registry_every_tenant_is_applied_as_before() -> None:
    plan = plan_batch([as_incoming(make_set_auto_sync(GHOST, "100", True), SYNC_COMMANDS)])
    assert [a.event.type for a in plan.events] == ["sync.command.set_auto_sync"]
