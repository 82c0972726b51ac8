"""The contract store's schema: table metadata (`tables`) and its alembic migrations.

`migrate(url)` brings a database to the newest revision. It is idempotent (a database already at
head is left alone) and safe to call from several processes at once: a PostgreSQL advisory lock
serialises concurrent callers, and the later ones find the work done.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

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
                config = Config()
                config.set_main_option("script_location", str(MIGRATIONS_DIR))
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                connection.commit()
            finally:
                connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
                connection.commit()
    finally:
        engine.dispose()


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
