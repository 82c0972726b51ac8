"""The database itself refuses changes to PSA-owned fields of PSA-synced contracts (issue 2).

Only the writer's sync path (`SET LOCAL ROLE contract_sync_sync_path` in its transaction, a role
only the writer may assume) may change them; any other UPDATE of `status`, `billing_amount`, `billing_currency`, `billing_cycle`
(or clearing `psa_synced`), and any DELETE of a synced contract, fails in PostgreSQL.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit" / "writer"))

from writer_factories import as_incoming, make_record, unique_tenant

from schemas.topics import CONTRACT_RECORDS
from services.common.db import migrate
from services.common.db.roles import SYNC_PATH, WRITER, role_url
from services.writer.handlers import plan_batch
from services.writer.store import PostgresStore


@pytest.fixture
def synced_contract(database_url: str) -> Iterator[tuple[psycopg.Connection, str]]:
    """A PSA-synced contract written by the writer (as its role), and a plain connection of the
    writer's role outside the sync path."""
    migrate(database_url)
    tenant = unique_tenant("trg")
    writer_url = role_url(database_url, WRITER)
    store = PostgresStore(writer_url)
    try:
        store.apply(plan_batch([as_incoming(make_record(tenant, status="active"), CONTRACT_RECORDS)]))
    finally:
        store.close()
    dsn = writer_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn, f"cw:{tenant}:agreement:1"


def status_of(conn: psycopg.Connection, key: str) -> str:
    row = conn.execute("SELECT status FROM contracts WHERE contract_key = %s", (key,)).fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize(
    "assignment",
    [
        "status = 'cancelled'",
        "billing_amount = 0",
        "billing_currency = 'EUR'",
        "billing_cycle = 'annual'",
        "psa_synced = false",
    ],
)
def test_a_direct_update_of_a_psa_owned_column_of_a_synced_contract_is_refused(
    synced_contract: tuple[psycopg.Connection, str], assignment: str
) -> None:
    conn, key = synced_contract
    with pytest.raises(psycopg.errors.DatabaseError) as refused:
        conn.execute(f"UPDATE contracts SET {assignment} WHERE contract_key = %s", (key,))
    assert refused.value.sqlstate == "CS403"
    assert "read-only" in str(refused.value)
    assert status_of(conn, key) == "active"


def test_local_columns_of_a_synced_contract_can_be_updated_directly(
    synced_contract: tuple[psycopg.Connection, str],
) -> None:
    conn, key = synced_contract
    conn.execute("UPDATE contracts SET notes = 'ok', tags = ARRAY['a'] WHERE contract_key = %s", (key,))
    row = conn.execute("SELECT notes, tags FROM contracts WHERE contract_key = %s", (key,)).fetchone()
    assert row == ("ok", ["a"])


def test_a_synced_contract_cannot_be_deleted_by_the_writer(
    synced_contract: tuple[psycopg.Connection, str],
) -> None:
    conn, key = synced_contract
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM contracts WHERE contract_key = %s", (key,))
    with pytest.raises(psycopg.errors.DatabaseError) as refused, conn.transaction():
        conn.execute(f'SET LOCAL ROLE "{SYNC_PATH}"')
        conn.execute("DELETE FROM contracts WHERE contract_key = %s", (key,))
    assert refused.value.sqlstate in ("CS403", "42501")
    assert status_of(conn, key) == "active"


def test_the_sync_path_may_change_psa_owned_columns_within_its_own_transaction_only(
    synced_contract: tuple[psycopg.Connection, str],
) -> None:
    conn, key = synced_contract
    with conn.transaction():
        conn.execute(f'SET LOCAL ROLE "{SYNC_PATH}"')
        conn.execute("UPDATE contracts SET status = 'expired' WHERE contract_key = %s", (key,))
    assert status_of(conn, key) == "expired"
    with pytest.raises(psycopg.errors.DatabaseError):  # SET LOCAL ended with that transaction
        conn.execute("UPDATE contracts SET status = 'active' WHERE contract_key = %s", (key,))
    assert status_of(conn, key) == "expired"
