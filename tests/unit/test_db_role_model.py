"""The database role model (pure parts): every table has its grants, no role but the sync path's
members may take the sync path, and printed SQL never carries a password."""

from __future__ import annotations

import argparse

import pytest

from services.common import db_cli
from services.common.db.roles import (
    GRANTS,
    OWNER,
    READER,
    SYNC_PATH,
    WRITER,
    all_statements,
    grant_statements,
    role_statements,
    role_url,
)
from services.common.db.tables import metadata


def test_every_table_of_the_schema_is_granted_to_some_service_role() -> None:
    granted = {table for grant in GRANTS for table in grant.tables}
    assert set(metadata.tables) <= granted


def test_the_reader_role_only_reads_the_contract_store_and_writes_only_the_gateway_command_log() -> None:
    written = {
        t for grant in GRANTS if grant.role == READER and grant.privileges != "SELECT" for t in grant.tables
    }
    assert written == {"gateway_commands", "gateway_command_events"}


def test_nobody_is_granted_truncate_or_ddl() -> None:
    for statement in grant_statements():
        if statement.startswith("GRANT"):
            assert "TRUNCATE" not in statement and "ALL" not in statement.split(" ON ")[0], statement


def test_only_the_writer_is_a_member_of_the_sync_path_role() -> None:
    memberships = [s for s in role_statements() if s.startswith("GRANT")]
    assert memberships == [f'GRANT "{SYNC_PATH}" TO "{WRITER}"']


def test_grants_are_limited_to_the_tables_that_exist() -> None:
    statements = grant_statements(["contracts"])
    granted = [s for s in statements if s.startswith("GRANT")]
    assert granted and all('"contracts"' in s and "catalog_items" not in s for s in granted)


def test_printed_roles_never_contain_a_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONTRACT_SYNC_DB_PASSWORD_WRITER", "writer-pw-0xFEED")
    monkeypatch.setenv("DATABASE_URL", "postgresql://admin@db/contract_sync")

    assert db_cli._roles(argparse.Namespace(apply=False, database=None)) == 0
    printed = capsys.readouterr().out

    assert "writer-pw-0xFEED" not in printed
    assert 'ALTER DATABASE "contract_sync" OWNER TO "contract_sync_owner";' in printed
    assert db_cli.role_passwords()[WRITER] == "writer-pw-0xFEED"


def test_applied_statements_set_the_passwords_given() -> None:
    statements = all_statements("x", {OWNER: "owner-pw"})
    assert f"ALTER ROLE \"{OWNER}\" PASSWORD 'owner-pw'" in statements


def test_a_role_url_swaps_only_the_user_and_password() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:15432/contract_sync?sslmode=require"
    assert role_url(url, WRITER) == (
        "postgresql+psycopg://contract_sync_writer@127.0.0.1:15432/contract_sync?sslmode=require"
    )
