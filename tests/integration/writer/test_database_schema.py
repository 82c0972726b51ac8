"""The migrations and the table metadata agree, and `migrate` is idempotent and concurrency-safe."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from services.common.db import current_revision, make_engine, migrate
from services.common.db.tables import metadata


def test_migrating_again_and_concurrently_is_a_no_op(migrated_url: str) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(migrate, [migrated_url] * 3))
    assert current_revision(migrated_url) == "0007_psa_digest"


def test_the_tables_module_matches_the_migrated_schema(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            views = conn.execute(
                text("SELECT viewname FROM pg_views WHERE viewname = 'catalog_item_states'")
            ).all()
    finally:
        engine.dispose()
    assert diff == []
    assert views == [("catalog_item_states",)]
