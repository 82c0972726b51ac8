"""The database roles enforce least privilege (issue 18): the writer cannot change the schema,
truncate contracts, or step around the PSA-owned guard with a setting; the gateway's reader role
cannot write anything; migrations run as (and leave everything owned by) the owner role."""

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
from services.common.db.roles import OWNER, POLLER, READER, SYNC_PATH, WRITER, role_url
from services.writer.handlers import plan_batch
from services.writer.store import PostgresStore

WRITABLE_TABLES = {  # table -> a column of it
    "contracts": "tenant_id",
    "catalog_items": "tenant_id",
    "client_sync_settings": "tenant_id",
    "processed_events": "topic",
    "writer_outbox": "topic",
    "poller_cursors": "tenant_id",
    "poller_snapshots": "tenant_id",
}


def connect(database_url: str, role: str) -> psycopg.Connection:
    dsn = role_url(database_url, role).replace("postgresql+psycopg://", "postgresql://", 1)
    return psycopg.connect(dsn, autocommit=True)


@pytest.fixture
def synced_key(database_url: str) -> str:
    """The key of a PSA-synced contract the writer (as its role) just wrote."""
    migrate(database_url)
    tenant = unique_tenant("roles")
    store = PostgresStore(role_url(database_url, WRITER))
    try:
        store.apply(plan_batch([as_incoming(make_record(tenant, status="active"), CONTRACT_RECORDS)]))
    finally:
        store.close()
    return f"cw:{tenant}:agreement:1"


@pytest.fixture
def writer(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url, WRITER) as conn:
        yield conn


def status_of(conn: psycopg.Connection, key: str) -> str:
    row = conn.execute("SELECT status FROM contracts WHERE contract_key = %s", (key,)).fetchone()
    assert row is not None
    return str(row[0])


def test_the_writer_role_cannot_disable_the_guard_trigger(
    writer: psycopg.Connection, synced_key: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
        writer.execute("ALTER TABLE contracts DISABLE TRIGGER contracts_psa_owned_guard")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        writer.execute("DROP TRIGGER contracts_psa_owned_guard ON contracts")


def test_the_writer_role_cannot_truncate_contracts(writer: psycopg.Connection, synced_key: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), writer.transaction():
        writer.execute("TRUNCATE contracts")
    assert status_of(writer, synced_key) == "active"


def test_the_writer_role_cannot_change_a_psa_owned_column_after_setting_the_old_sync_path_flag(
    writer: psycopg.Connection, synced_key: str
) -> None:
    with pytest.raises(psycopg.errors.DatabaseError) as refused, writer.transaction():
        writer.execute("SET LOCAL contract_sync.sync_path = 'on'")
        writer.execute("UPDATE contracts SET status = 'cancelled' WHERE contract_key = %s", (synced_key,))
    assert refused.value.sqlstate == "CS403"
    assert status_of(writer, synced_key) == "active"


def test_only_the_writer_role_may_assume_the_sync_path_role(database_url: str, synced_key: str) -> None:
    for role in (POLLER, READER, OWNER):
        with connect(database_url, role) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'SET ROLE "{SYNC_PATH}"')
    with connect(database_url, WRITER) as conn:
        with conn.transaction():
            conn.execute(f'SET LOCAL ROLE "{SYNC_PATH}"')
            conn.execute("UPDATE contracts SET status = 'expired' WHERE contract_key = %s", (synced_key,))
        assert status_of(conn, synced_key) == "expired"


def test_a_superuser_other_than_the_owner_cannot_truncate_contracts_or_delete_a_synced_one(
    database_url: str, synced_key: str
) -> None:
    """The guard itself (not only the missing privilege) refuses every role but the owner."""
    with connect(database_url, "postgres") as admin:
        with pytest.raises(psycopg.errors.DatabaseError) as truncate, admin.transaction():
            admin.execute("TRUNCATE contracts")
        assert truncate.value.sqlstate == "CS403"
        with pytest.raises(psycopg.errors.DatabaseError) as delete:
            admin.execute("DELETE FROM contracts WHERE contract_key = %s", (synced_key,))
        assert delete.value.sqlstate == "CS403"
        assert status_of(admin, synced_key) == "active"


def test_the_owner_may_delete_a_synced_contract(database_url: str, synced_key: str) -> None:
    with connect(database_url, OWNER) as owner:
        deleted = owner.execute("DELETE FROM contracts WHERE contract_key = %s", (synced_key,)).rowcount
    assert deleted == 1


@pytest.mark.parametrize(("table", "column"), WRITABLE_TABLES.items())
def test_the_gateway_reader_role_cannot_write_any_table(database_url: str, table: str, column: str) -> None:
    migrate(database_url)
    with connect(database_url, READER) as reader:
        for statement in (
            f"INSERT INTO {table} DEFAULT VALUES",
            f"UPDATE {table} SET {column} = {column}",
            f"DELETE FROM {table}",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), reader.transaction():
                reader.execute(statement)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), reader.transaction():
            reader.execute(f"TRUNCATE {table}")


def test_the_gateway_reader_role_reads_the_contract_store_and_cannot_create_tables(
    database_url: str, synced_key: str
) -> None:
    with connect(database_url, READER) as reader:
        assert status_of(reader, synced_key) == "active"
        reader.execute("SELECT count(*) FROM catalog_item_states").fetchone()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("CREATE TABLE gateway_was_here (id int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("SELECT * FROM poller_cursors")


def test_the_poller_role_touches_its_own_tables_only(database_url: str, synced_key: str) -> None:
    with connect(database_url, POLLER) as poller:
        poller.execute("SELECT count(*) FROM poller_cursors").fetchone()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            poller.execute("SELECT status FROM contracts")


def test_migrations_run_as_the_owner_and_leave_every_object_owned_by_it(database_url: str) -> None:
    migrate(database_url)  # the stack's URL is an administrator's: migrate switches to the owner
    with connect(database_url, OWNER) as owner:
        foreign = owner.execute(
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'S') "
            "AND pg_get_userbyid(c.relowner) <> %s",
            (OWNER,),
        ).fetchall()
        database_owner = owner.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert foreign == []
    assert database_owner == (OWNER,)
    with connect(database_url, WRITER) as writer, pytest.raises(psycopg.errors.InsufficientPrivilege):
        writer.execute("CREATE TABLE writer_was_here (id int)")


def test_the_gateway_role_writes_nothing_but_its_own_command_log(database_url: str) -> None:
    """Every table, view and sequence of the schema, every writing privilege: the gateway's role holds
    INSERT/UPDATE/DELETE on its two command-log tables only, TRUNCATE on nothing, no sequence."""
    migrate(database_url)
    with connect(database_url, OWNER) as owner:
        rows = owner.execute(
            "SELECT c.relname, c.relkind, p.privilege FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p(privilege) "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p') "
            "AND has_table_privilege(%s, c.oid, p.privilege)",
            (READER,),
        ).fetchall()
        sequences = owner.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'S' "
            "AND (has_sequence_privilege(%s, c.oid, 'UPDATE') OR has_sequence_privilege(%s, c.oid, 'USAGE'))",
            (READER, READER),
        ).fetchall()
    writable = {(name, privilege) for name, _kind, privilege in rows}
    assert writable == {
        (table, privilege)
        for table in ("gateway_commands", "gateway_command_events")
        for privilege in ("INSERT", "UPDATE", "DELETE")
    }
    assert sequences == []
