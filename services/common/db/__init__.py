"""The contract store's schema: table metadata (`tables`) and its alembic migrations.

`migrate(url)` brings a database to the newest revision. It is idempotent (a database already at
head is left alone) and safe to call from several processes at once: a PostgreSQL advisory lock
serialises concurrent callers, and the later ones find the work done. Migrations run as the owner
role (`roles.OWNER`): a URL of a member of it (an administrator) switches to it with `SET ROLE`;
afterwards the roles' grants are re-applied (`roles.apply_grants`), once the roles exist.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from services.common.db.roles import OWNER, apply_grants

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_LOCK_KEY = 7_310_420_001  # pg_advisory_lock key of the migration (any constant bigint)


def sqlalchemy_url(url: str) -> str:
    """`url` with the psycopg 3 driver: `postgresql://` and `postgres://` become `postgresql+psycopg://`."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, **options: object) -> Engine:
    """A SQLAlchemy engine on `url` (psycopg 3 driver); no connection is opened until first use."""
    return create_engine(sqlalchemy_url(url), **options)


def migrate(database_url: str) -> None:
    """Upgrade the database at `database_url` to the newest schema revision (alembic `upgrade head`).

    Idempotent; concurrent callers wait on an advisory lock. Raises the driver's error when the
    database cannot be reached or a migration fails (a failed migration leaves no partial change:
    PostgreSQL DDL is transactional).
    """
    from alembic import command
    from alembic.config import Config

    engine = make_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
            connection.commit()
            try:
                _become_owner(connection)
                config = Config()
                config.set_main_option("script_location", str(MIGRATIONS_DIR))
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                apply_grants(connection)
                connection.commit()
            finally:
                connection.rollback()
                connection.execute(text("RESET ROLE"))
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
                connection.commit()
    finally:
        engine.dispose()


def _become_owner(connection: Connection) -> None:
    """`SET ROLE` to the owner when connected as another member of it (e.g. a superuser)."""
    is_member = connection.execute(
        text(
            "SELECT current_user <> :owner AND EXISTS (SELECT FROM pg_roles WHERE rolname = :owner) "
            "AND pg_has_role(current_user, (SELECT oid FROM pg_roles WHERE rolname = :owner), 'MEMBER')"
        ),
        {"owner": OWNER},
    ).scalar_one()
    if is_member:
        connection.execute(text(f'SET ROLE "{OWNER}"'))


def current_revision(database_url: str) -> str | None:
    """The database's alembic revision, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


__all__ = ["MIGRATIONS_DIR", "current_revision", "make_engine", "migrate", "sqlalchemy_url"]
