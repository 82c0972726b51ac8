"""`contract-sync db migrate | roles`: the contract store's schema and its database roles.

- `db migrate`: alembic upgrade head as the owner role; idempotent.
- `db roles`: print the SQL that creates the roles of `services.common.db.roles` and grants their
  privileges (passwords are never printed); `--apply` runs it with `DATABASE_URL`, which must name an
  administrator (CREATEROLE, allowed to change the database's owner). Passwords come from the
  environment only: `CONTRACT_SYNC_DB_PASSWORD_<ROLE>` (e.g. `..._WRITER`), each registered for log
  redaction; a role without one keeps its password.
"""

from __future__ import annotations

import argparse
import os

from services.common.logging import register_secret
from services.common.settings import DatabaseSettings

PASSWORD_ENV_PREFIX = "CONTRACT_SYNC_DB_PASSWORD_"  # noqa: S105 (a variable name prefix)


def role_passwords(environ: dict[str, str] | None = None) -> dict[str, str | None]:
    """Login role -> password from `CONTRACT_SYNC_DB_PASSWORD_<OWNER|WRITER|POLLER|READER>` (pure
    apart from registering the values for redaction)."""
    from services.common.db.roles import LOGIN_ROLES

    env = os.environ if environ is None else environ
    passwords: dict[str, str | None] = {}
    for role in LOGIN_ROLES:
        value = env.get(PASSWORD_ENV_PREFIX + role.removeprefix("contract_sync_").upper())
        register_secret(value)
        passwords[role] = value or None
    return passwords


def _migrate(_: argparse.Namespace) -> int:
    from services.common.db import migrate

    migrate(DatabaseSettings().url)
    print("database schema is at the newest revision")
    return 0


def _roles(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from services.common.db.roles import all_statements, apply_roles

    url = DatabaseSettings().url
    if args.apply:
        apply_roles(url, role_passwords())
        print("database roles and grants applied")
        return 0
    database = args.database or make_url(url).database or "contract_sync"
    for statement in all_statements(database):  # never with passwords
        print(statement.rstrip(";") + ";")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("db", help="the contract store's schema and database roles")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("migrate", help="apply migrations (alembic upgrade head)").set_defaults(func=_migrate)
    roles = actions.add_parser(
        "roles",
        help="print (or --apply) the roles and grants: owner, writer, sync path, poller, reader",
    )
    roles.add_argument(
        "--apply", action="store_true", help="run them with DATABASE_URL (an administrator's URL)"
    )
    roles.add_argument(
        "--database", default=None, help="database name in the printed SQL (default: DATABASE_URL's)"
    )
    roles.set_defaults(func=_roles)
