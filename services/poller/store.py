"""PostgreSQL adapter for the poller's own state: cursors (`poller_cursors`) and the last emitted
snapshot of every agreement (`poller_snapshots`).

Guarantees:
- Writes are upserts in one transaction per call: `save_snapshots` of a batch is all-or-nothing,
  so a crash leaves either the old or the new digests of that batch, never half.
- A cursor write replaces the previous watermark only when the new one is not older (a slow
  run cannot move a watermark backwards).
- The schema comes from the migrations (`services.common.db.migrate`); this adapter creates nothing.
  `addition_ids` (the ids of the last emitted additions, needed to notice a removed addition;
  migration 0003) is used when the table has that column; on an older schema addition removals
  are not detected (logged once at start).

The methods are async and run the blocking driver in a worker thread, so the event loop (HTTP
reads, Kafka acks) keeps going while PostgreSQL answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine, MetaData, Table, and_, delete, func, select
from sqlalchemy.dialects.postgresql import insert

from services.common.db import make_engine
from services.poller.changes import KnownAgreement, SnapshotDigest

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Cursor:
    scope: str
    watermark: datetime | None = None
    last_run: dict[str, Any] = field(default_factory=dict)


class PollerStore(Protocol):
    """The poller's persistent state (port)."""

    async def known_agreements(
        self, tenant_id: str, agreement_ids: Iterable[int] | None = None
    ) -> dict[int, KnownAgreement]: ...

    async def save_snapshots(self, tenant_id: str, records: Sequence[KnownAgreement]) -> None: ...

    async def forget_agreements(self, tenant_id: str, agreement_ids: Iterable[int]) -> None: ...

    async def get_cursor(self, tenant_id: str, scope: str) -> Cursor: ...

    async def set_cursor(
        self, tenant_id: str, scope: str, watermark: datetime | None, last_run: dict[str, Any]
    ) -> None: ...


class PostgresPollerStore:
    """`PollerStore` on PostgreSQL (SQLAlchemy Core, psycopg 3)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        metadata = MetaData()
        self._snapshots = Table("poller_snapshots", metadata, autoload_with=engine)
        self._cursors = Table("poller_cursors", metadata, autoload_with=engine)
        self.tracks_addition_ids = "addition_ids" in self._snapshots.c
        if not self.tracks_addition_ids:
            log.warning("poller_snapshots has no addition_ids column: removed additions will not be detected")

    @classmethod
    def from_url(cls, url: str) -> PostgresPollerStore:
        return cls(make_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4))

    def dispose(self) -> None:
        self._engine.dispose()

    async def ping(self) -> bool:
        def _ping() -> bool:
            with self._engine.connect() as connection:
                return connection.execute(select(1)).scalar() == 1

        return await asyncio.to_thread(_ping)

    # -- snapshots ---------------------------------------------------------------------------------

    def _known(self, tenant_id: str, agreement_ids: list[int] | None) -> dict[int, KnownAgreement]:
        t = self._snapshots
        columns = [t.c.agreement_id, t.c.client_id, t.c.snapshot_hash, t.c.psa_last_updated]
        if self.tracks_addition_ids:
            columns.append(t.c.addition_ids)
        query = select(*columns).where(t.c.tenant_id == tenant_id)
        if agreement_ids is not None:
            query = query.where(t.c.agreement_id.in_(agreement_ids))
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        result: dict[int, KnownAgreement] = {}
        for row in rows:
            ids = row[4] if self.tracks_addition_ids else None
            result[int(row[0])] = KnownAgreement(
                agreement_id=int(row[0]),
                client_id=row[1],
                digest=SnapshotDigest.parse(row[2]),
                psa_last_updated=row[3],
                addition_ids=frozenset(int(i) for i in ids) if ids is not None else None,
            )
        return result

    async def known_agreements(
        self, tenant_id: str, agreement_ids: Iterable[int] | None = None
    ) -> dict[int, KnownAgreement]:
        """Every agreement of the tenant (or only those of `agreement_ids`) with the digest of its
        last emitted snapshot."""
        ids = None if agreement_ids is None else [int(i) for i in agreement_ids]
        return await asyncio.to_thread(self._known, tenant_id, ids)

    def _save(self, tenant_id: str, records: Sequence[KnownAgreement]) -> None:
        t = self._snapshots
        rows = []
        for record in records:
            if record.digest is None:
                continue
            row: dict[str, Any] = {
                "tenant_id": tenant_id,
                "agreement_id": record.agreement_id,
                "client_id": record.client_id,
                "snapshot_hash": record.digest.value,
                "psa_last_updated": record.psa_last_updated,
            }
            if self.tracks_addition_ids:
                row["addition_ids"] = sorted(record.addition_ids or ())
            rows.append(row)
        if not rows:
            return
        statement = insert(t)
        update = {
            "client_id": statement.excluded.client_id,
            "snapshot_hash": statement.excluded.snapshot_hash,
            "psa_last_updated": statement.excluded.psa_last_updated,
            "emitted_at": func.now(),
        }
        if self.tracks_addition_ids:
            update["addition_ids"] = statement.excluded.addition_ids
        statement = statement.on_conflict_do_update(
            index_elements=[t.c.tenant_id, t.c.agreement_id], set_=update
        )
        with self._engine.begin() as connection:
            connection.execute(statement, rows)

    async def save_snapshots(self, tenant_id: str, records: Sequence[KnownAgreement]) -> None:
        """Record the snapshots whose events Kafka acknowledged (one transaction)."""
        if records:
            await asyncio.to_thread(self._save, tenant_id, list(records))

    def _forget(self, tenant_id: str, agreement_ids: list[int]) -> None:
        t = self._snapshots
        with self._engine.begin() as connection:
            connection.execute(
                delete(t).where(and_(t.c.tenant_id == tenant_id, t.c.agreement_id.in_(agreement_ids)))
            )

    async def forget_agreements(self, tenant_id: str, agreement_ids: Iterable[int]) -> None:
        """Drop removed agreements (after their removal event was acknowledged)."""
        ids = sorted(set(agreement_ids))
        if ids:
            await asyncio.to_thread(self._forget, tenant_id, ids)

    # -- cursors -----------------------------------------------------------------------------------

    def _get_cursor(self, tenant_id: str, scope: str) -> Cursor:
        t = self._cursors
        with self._engine.connect() as connection:
            row = connection.execute(
                select(t.c.watermark, t.c.last_run).where(
                    and_(t.c.tenant_id == tenant_id, t.c.scope == scope)
                )
            ).first()
        if row is None:
            return Cursor(scope)
        return Cursor(scope, row[0], dict(row[1] or {}))

    async def get_cursor(self, tenant_id: str, scope: str) -> Cursor:
        return await asyncio.to_thread(self._get_cursor, tenant_id, scope)

    def _set_cursor(
        self, tenant_id: str, scope: str, watermark: datetime | None, last_run: dict[str, Any]
    ) -> None:
        t = self._cursors
        statement = insert(t).values(tenant_id=tenant_id, scope=scope, watermark=watermark, last_run=last_run)
        statement = statement.on_conflict_do_update(
            index_elements=[t.c.tenant_id, t.c.scope],
            set_={
                # never move a watermark backwards
                "watermark": func.greatest(
                    func.coalesce(t.c.watermark, statement.excluded.watermark), statement.excluded.watermark
                )
                if watermark is not None
                else t.c.watermark,
                "last_run": statement.excluded.last_run,
                "updated_at": func.now(),
            },
        )
        with self._engine.begin() as connection:
            connection.execute(statement)

    async def set_cursor(
        self, tenant_id: str, scope: str, watermark: datetime | None, last_run: dict[str, Any]
    ) -> None:
        """Store a scope's watermark (monotonic) and a JSON summary of its last run."""
        await asyncio.to_thread(self._set_cursor, tenant_id, scope, watermark, last_run)
