"""`contract-sync db migrate`: apply the database migrations (alembic upgrade head); idempotent."""

from __future__ import annotations

import argparse

from services.common.settings import DatabaseSettings


def _migrate(_: argparse.Namespace) -> int:
    from services.common.db import migrate

    migrate(DatabaseSettings().url)
    print("database schema is at the newest revision")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("db", help="the contract store's schema")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("migrate", help="apply migrations (alembic upgrade head)").set_defaults(func=_migrate)
