"""The contract store's database roles and their grants (least privilege), as pure SQL plus one
adapter that applies them.

Roles (fixed names; one cluster serves one contract store):
- `contract_sync_owner`: owns the database, the schema objects and the migrations (`db migrate`,
  the chart's migrate Job). The only role that may TRUNCATE `contracts` or DELETE a synced contract.
- `contract_sync_writer` (LOGIN): the writer. Member of `contract_sync_sync_path`, whose DML
  privileges it inherits; no DDL, no TRUNCATE.
- `contract_sync_sync_path` (NOLOGIN): the sync path. The PSA-owned guard lets a transaction change
  PSA-owned columns of a synced contract only while `current_user` is this role (the writer's
  `SET LOCAL ROLE`); only its members (the writer) can assume it.
- `contract_sync_poller` (LOGIN): the poller's own tables only.
- `contract_sync_reader` (LOGIN): the gateway: read-only access to the contract store; writes only
  its own command log (`gateway_commands`, `gateway_command_events`).

`role_statements` and `grant_statements` are pure and idempotent SQL; `apply_roles` runs them with an
administrative connection (CREATEROLE, or a superuser) and hands the database to the owner.
`apply_grants` (run by `migrate` as the owner) re-grants after every migration, so a new table is
never left without its grants.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

OWNER = "contract_sync_owner"
WRITER = "contract_sync_writer"
SYNC_PATH = "contract_sync_sync_path"
POLLER = "contract_sync_poller"
READER = "contract_sync_reader"

LOGIN_ROLES = (OWNER, WRITER, POLLER, READER)
SERVICE_ROLES: dict[str, str] = {
    "migrate": OWNER,
    "writer": WRITER,
    "poller": POLLER,
    "gateway": READER,
}
"""Which role each component connects as."""

_DML = "SELECT, INSERT, UPDATE, DELETE"


@dataclass(frozen=True)
class TableGrant:
    role: str
    privileges: str
    tables: tuple[str, ...]


GRANTS: tuple[TableGrant, ...] = (
    # the sync path (and so the writer, its member): the contract store; DELETE only where rows are
    # transient (event ids, the outbox); contracts are never deleted, catalog items are marked removed
    TableGrant(SYNC_PATH, "SELECT, INSERT, UPDATE", ("contracts", "catalog_items", "client_sync_settings")),
    TableGrant(SYNC_PATH, _DML, ("processed_events", "writer_outbox")),
    TableGrant(SYNC_PATH, "SELECT", ("catalog_item_states",)),
    TableGrant(POLLER, _DML, ("poller_cursors", "poller_snapshots")),
    TableGrant(
        READER,
        "SELECT",
        ("contracts", "catalog_items", "catalog_item_states", "client_sync_settings"),
    ),
    TableGrant(READER, _DML, ("gateway_commands", "gateway_command_events")),
)
"""Table privileges per role (pure data; `tests/unit/test_db_role_model.py` checks every table is covered)."""

SEQUENCE_GRANTS: tuple[tuple[str, str], ...] = ((SYNC_PATH, "writer_outbox_seq_seq"),)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def role_statements(passwords: Mapping[str, str | None] | None = None) -> list[str]:
    """Create the roles when missing and (re)set the passwords given; idempotent SQL (pure).

    `passwords` maps a login role to its password; a role without one keeps its password (or has
    none: fine for trust or certificate authentication).
    """
    passwords = passwords or {}
    statements = []
    for role in (SYNC_PATH, *LOGIN_ROLES):
        login = "NOLOGIN" if role == SYNC_PATH else "LOGIN"
        statements.append(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
            f"{_literal(role)}) THEN CREATE ROLE {_quote(role)} {login}; END IF; END $$"
        )
        statements.append(f"ALTER ROLE {_quote(role)} {login} NOSUPERUSER NOCREATEDB NOCREATEROLE")
        password = passwords.get(role)
        if password:
            statements.append(f"ALTER ROLE {_quote(role)} PASSWORD {_literal(password)}")
    # the writer assumes the sync path with SET ROLE; nobody else is a member
    statements.append(f"GRANT {_quote(SYNC_PATH)} TO {_quote(WRITER)}")
    return statements


def ownership_statements(database: str) -> list[str]:
    """Hand the database and the public schema to the owner, and take the write privileges on the
    schema away from everyone else (pure; run as an administrator)."""
    owner = _quote(OWNER)
    return [
        f"ALTER DATABASE {_quote(database)} OWNER TO {owner}",
        f"ALTER SCHEMA public OWNER TO {owner}",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {', '.join(_quote(r) for r in (SYNC_PATH, WRITER, POLLER, READER))}",
    ]


ADOPT_OBJECTS = """
DO $$
DECLARE item record;
BEGIN
    FOR item IN
        SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'p')
          AND pg_get_userbyid(c.relowner) <> 'OWNER_ROLE'
    LOOP
        EXECUTE format('ALTER %s %I OWNER TO OWNER_ROLE',
                       CASE item.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END,
                       item.relname);
    END LOOP;
    FOR item IN
        SELECT p.oid::regprocedure AS signature FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> 'OWNER_ROLE'
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO OWNER_ROLE', item.signature);
    END LOOP;
END $$
""".replace("OWNER_ROLE", OWNER)
"""Objects created before the roles existed (by an administrator's migration) pass to the owner
(a table's identity sequences follow their table)."""


def grant_statements(existing_tables: Iterable[str] | None = None) -> list[str]:
    """GRANTs of `GRANTS` (only on `existing_tables` when given) after revoking everything else the
    roles hold on the schema's tables, so a privilege taken out of `GRANTS` is taken away (pure)."""
    present = None if existing_tables is None else set(existing_tables)
    roles = ", ".join(_quote(r) for r in (SYNC_PATH, WRITER, POLLER, READER))
    statements = [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC, {roles}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC, {roles}",
    ]
    for grant in GRANTS:
        tables = [t for t in grant.tables if present is None or t in present]
        if tables:
            statements.append(
                f"GRANT {grant.privileges} ON {', '.join(_quote(t) for t in tables)} TO {_quote(grant.role)}"
            )
    for role, sequence in SEQUENCE_GRANTS:
        if present is None or sequence in present:
            statements.append(f"GRANT USAGE, SELECT ON SEQUENCE {_quote(sequence)} TO {_quote(role)}")
    return statements


def all_statements(database: str, passwords: Mapping[str, str | None] | None = None) -> list[str]:
    """Everything `contract-sync db roles` prints, in order (pure)."""
    return [
        *role_statements(passwords),
        *ownership_statements(database),
        ADOPT_OBJECTS.strip(),
        *grant_statements(),
    ]


def roles_exist(connection: Connection) -> bool:
    """True when every role of the model exists in the cluster."""
    found = connection.execute(
        text("SELECT count(*) FROM pg_roles WHERE rolname = ANY(:names)"),
        {"names": [SYNC_PATH, *LOGIN_ROLES]},
    ).scalar_one()
    return int(found) == len(LOGIN_ROLES) + 1


def apply_grants(connection: Connection) -> bool:
    """Re-grant `GRANTS` on the tables that exist (in the caller's transaction; run as the owner).
    Returns False, changing nothing, while the roles do not exist yet (`db roles --apply` first)."""
    if not roles_exist(connection):
        return False
    existing = connection.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'S', 'p')"
        )
    ).scalars()
    for statement in grant_statements(list(existing)):
        connection.execute(text(statement))
    return True


def apply_roles(admin_url: str, passwords: Mapping[str, str | None] | None = None) -> None:
    """Create the roles, hand the database to the owner, adopt objects and grant (as `admin_url`,
    a role with CREATEROLE that may alter the database's ownership); idempotent.

    The grants on the tables are applied as the owner (`SET ROLE`), as `migrate` applies them.
    """
    from services.common.db import make_engine

    url = make_url(admin_url)
    database = url.database or "postgres"
    engine = make_engine(admin_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            for statement in (*role_statements(passwords), *ownership_statements(database), ADOPT_OBJECTS):
                connection.execute(text(statement))
            connection.execute(text(f"SET LOCAL ROLE {_quote(OWNER)}"))
            apply_grants(connection)
    finally:
        engine.dispose()


def role_url(database_url: str, role: str, password: str | None = None) -> str:
    """`database_url` with the user `role` (and `password`, else none) (pure)."""
    url = make_url(database_url).set(username=role, password=password)
    return url.render_as_string(hide_password=False)
