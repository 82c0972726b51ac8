"""Environmental database failures are not bad data (docs/writer.md "Failures"): on the real stack,
the role the writer's batches write as (contract_sync_sync_path, not a superuser) loses UPDATE on
`contracts` mid-stream (REVOKE as the superuser); nothing is dead-lettered, readiness goes
false, each affected client gets a retryable `sync.failed`, and once the grant returns every record
is applied exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from writer_factories import at, make_record, unique_tenant
from writer_helpers import eventually, produce, read_all, running_writer, writer_settings

from schemas.topics import SYNC_EVENTS, parse
from services.common.db.roles import SYNC_PATH, WRITER, role_url
from services.common.health import run_checks
from services.writer.service import readiness_checks
from services.writer.store import psycopg_conninfo


@pytest.fixture
def writer_role(migrated_url: str) -> Iterator[tuple[str, str]]:
    """The writer's login URL and the non-superuser role its batches write as (`SET LOCAL ROLE`
    contract_sync_sync_path, services/common/db/roles.py); its UPDATE on `contracts` is given
    back afterwards whatever happened."""
    try:
        yield role_url(migrated_url, WRITER), SYNC_PATH
    finally:
        superuser(migrated_url, f"GRANT UPDATE ON contracts TO {SYNC_PATH}")


def superuser(migrated_url: str, sql: str) -> None:
    with psycopg.connect(psycopg_conninfo(migrated_url), autocommit=True) as conn:
        conn.execute(sql)


def contracts_of(url: str, tenant: str) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(psycopg_conninfo(url)) as conn:
        rows = conn.execute(
            "SELECT contract_key, last_event_id, psa_last_updated FROM contracts WHERE tenant_id = %s",
            (tenant,),
        ).fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}


async def test_the_writer_role_losing_update_mid_stream_dead_letters_nothing_and_applies_all_once_after_the_grant(
    kafka_bootstrap: str, migrated_url: str, writer_topics: dict[str, str], writer_role: tuple[str, str]
) -> None:
    url, role = writer_role
    tenant = unique_tenant()
    first = [
        make_record(tenant, client=str(100 + i % 2), agreement_id=i, version=at(0)) for i in range(1, 41)
    ]
    # while UPDATE is revoked: newer versions of half of them, and new contracts
    updates = [
        make_record(tenant, client=str(100 + i % 2), agreement_id=i, version=at(5)) for i in range(1, 21)
    ]
    fresh = [
        make_record(tenant, client=str(100 + i % 2), agreement_id=i, version=at(5)) for i in range(41, 61)
    ]
    settings = writer_settings(writer_topics, retry_initial_s=0.05, retry_max_s=0.5)
    async with running_writer(kafka_bootstrap, url, settings) as writer:
        checks = readiness_checks(writer)
        await produce(kafka_bootstrap, writer_topics["records"], first)
        await eventually(lambda: len(contracts_of(migrated_url, tenant)) == 40)
        assert (await run_checks(checks))["applying"] is True

        superuser(migrated_url, f"REVOKE UPDATE ON contracts FROM {role}")
        await produce(kafka_bootstrap, writer_topics["records"], updates + fresh)

        async def not_ready() -> bool:
            return not all((await run_checks(checks)).values())

        await eventually(not_ready, timeout_s=30)
        assert (await run_checks(checks))["applying"] is False
        failed = [
            e
            for e in (
                parse(SYNC_EVENTS, r.value)
                for r in await read_all(kafka_bootstrap, writer_topics["events"], expect=1)
            )
            if e.type == "sync.failed" and e.tenantid == tenant
        ]
        # the clients of the batch being retried (later batches wait behind it)
        assert failed and {e.data.client_id for e in failed} <= {"100", "101"}
        assert all(e.data.retryable and e.data.error_code == "database_unavailable" for e in failed)
        assert all("42501" in e.data.message for e in failed)
        assert len(contracts_of(migrated_url, tenant)) == 40  # nothing of the stream applied meanwhile

        superuser(migrated_url, f"GRANT UPDATE ON contracts TO {role}")
        await eventually(lambda: len(contracts_of(migrated_url, tenant)) == 60, timeout_s=30)
        await eventually(lambda: writer.applied_messages == 80, timeout_s=30)
        assert (await run_checks(checks))["applying"] is True
        events = [
            e
            for e in (
                parse(SYNC_EVENTS, r.value)
                for r in await read_all(kafka_bootstrap, writer_topics["events"], expect=3)
            )
            if e.tenantid == tenant
        ]

    dead = await read_all(kafka_bootstrap, writer_topics["dlq"], expect=0, timeout_s=2)
    assert dead == []  # nothing dead-lettered
    stored = contracts_of(migrated_url, tenant)
    for record in updates + fresh:
        assert stored[record.data.contract_key] == (record.id, at(5))
    for record in first[20:]:
        assert stored[record.data.contract_key] == (record.id, at(0))
    applied = [e for e in events if e.type == "sync.contracts.applied"]
    assert sum(e.data.created for e in applied) == 60  # exactly once each
    assert sum(e.data.updated for e in applied) == 20
    with psycopg.connect(psycopg_conninfo(migrated_url)) as conn:
        ids = [r.id for r in first + updates + fresh]
        row = conn.execute(
            "SELECT count(*) FROM processed_events WHERE event_id = ANY(%s)", (ids,)
        ).fetchone()
    assert row == (80,)
