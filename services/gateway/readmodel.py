"""Reads of the PostgreSQL read model for the API (psycopg 3, async pool). Every query is scoped by
the caller's tenant in its WHERE clause: a row of another tenant is never returned, so the API
answers 404 for it. Read-only: nothing here writes the contract store."""

from __future__ import annotations

from typing import Any

import orjson
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from services.common.db import sqlalchemy_url


def conninfo(database_url: str) -> str:
    """A libpq URL for psycopg from a SQLAlchemy URL (`postgresql+psycopg://` -> `postgresql://`)."""
    return sqlalchemy_url(database_url).replace("postgresql+psycopg://", "postgresql://", 1)


async def _configure(conn: AsyncConnection[Any]) -> None:
    set_json_loads(orjson.loads, conn)  # jsonb columns (catalog summaries) parsed in C


def new_pool(database_url: str, size: int) -> AsyncConnectionPool:
    """An async pool (not opened); statements time out after 10 s."""
    return AsyncConnectionPool(
        conninfo(database_url),
        min_size=1,
        max_size=size,
        open=False,
        configure=_configure,
        kwargs={"options": "-c statement_timeout=10000", "autocommit": True},
    )


CLIENTS_SQL = """
WITH ids AS (
    SELECT client_id FROM catalog_items WHERE tenant_id = %(tenant)s
    UNION SELECT client_id FROM contracts WHERE tenant_id = %(tenant)s
    UNION SELECT client_id FROM client_sync_settings WHERE tenant_id = %(tenant)s
), states AS (
    SELECT client_id, state, count(*) AS n FROM catalog_item_states WHERE tenant_id = %(tenant)s GROUP BY 1, 2
), contract_counts AS (
    SELECT client_id, count(*) AS n FROM contracts WHERE tenant_id = %(tenant)s GROUP BY 1
)
SELECT ids.client_id,
       coalesce((SELECT jsonb_object_agg(s.state, s.n) FROM states s WHERE s.client_id = ids.client_id),
                '{}'::jsonb) AS catalog,
       coalesce(cc.n, 0) AS contracts,
       coalesce(st.auto_sync, false) AS auto_sync,
       st.last_synced_at, st.last_status, st.last_error
FROM ids
LEFT JOIN contract_counts cc ON cc.client_id = ids.client_id
LEFT JOIN client_sync_settings st ON st.tenant_id = %(tenant)s AND st.client_id = ids.client_id
ORDER BY ids.client_id
"""

CATALOG_SQL = """
SELECT v.contract_key, v.kind, v.agreement_id, v.addition_id, v.name, v.summary, v.psa_last_updated,
       v.removed_at, v.state, c.psa_name, c.psa_start_date, c.psa_end_date, c.billing_amount,
       c.billing_currency, c.billing_cycle, c.status
FROM catalog_item_states v
LEFT JOIN contracts c ON c.contract_key = v.contract_key AND c.tenant_id = v.tenant_id
WHERE v.tenant_id = %(tenant)s AND v.client_id = %(client)s
ORDER BY v.agreement_id, v.addition_id NULLS FIRST
"""

CATALOG_VERSION_SQL = """
SELECT count(*) AS items,
       md5(string_agg(ci.ctid::text || ci.xmin::text || coalesce(c.ctid::text || c.xmin::text, '-'), ','
                      ORDER BY ci.contract_key))
       || coalesce((SELECT ':' || st.ctid::text || st.xmin::text FROM client_sync_settings st
                    WHERE st.tenant_id = %(tenant)s AND st.client_id = %(client)s), ':-') AS version
FROM catalog_items ci
LEFT JOIN contracts c ON c.contract_key = ci.contract_key
WHERE ci.tenant_id = %(tenant)s AND ci.client_id = %(client)s
"""
"""The version of everything a client's catalog document is read from: the client's catalog rows,
the contracts they join and the client's sync settings. Every committed INSERT, UPDATE or DELETE of
such a row changes it, because each row version has its own (`ctid`, `xmin`) (the transaction that
wrote it); it is a digest of those identities, not of the values, so it costs one index scan."""

SETTINGS_SQL = """
SELECT auto_sync, last_synced_at, last_status FROM client_sync_settings
WHERE tenant_id = %(tenant)s AND client_id = %(client)s
"""

CLIENT_EXISTS_SQL = """
SELECT EXISTS (SELECT 1 FROM catalog_items WHERE tenant_id = %(tenant)s AND client_id = %(client)s)
    OR EXISTS (SELECT 1 FROM contracts WHERE tenant_id = %(tenant)s AND client_id = %(client)s)
    OR EXISTS (SELECT 1 FROM client_sync_settings WHERE tenant_id = %(tenant)s AND client_id = %(client)s)
    AS found
"""

_CONTRACT_COLUMNS = """contract_key, client_id, kind, parent_contract_key, psa_synced, removed_in_psa_at,
    psa_last_updated, category, status, billing_amount, billing_currency, billing_cycle, name, contract_type,
    start_date, end_date, description, psa_name, psa_contract_type, psa_start_date, psa_end_date,
    psa_description, local_overrides, notes, owner, impact, tags, reminders, explanation, updated_at"""

CONTRACTS_SQL = f"""
SELECT {_CONTRACT_COLUMNS} FROM contracts
WHERE tenant_id = %(tenant)s AND client_id = %(client)s
ORDER BY agreement_id NULLS LAST, addition_id NULLS FIRST, contract_key
"""  # noqa: S608 (fixed column list)

CONTRACT_SQL = f"""
SELECT {_CONTRACT_COLUMNS} FROM contracts WHERE tenant_id = %(tenant)s AND contract_key = %(key)s
"""  # noqa: S608 (fixed column list)


class ReadModel:
    """The API's queries; each returns plain rows (dicts) of the caller's tenant only."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def _all(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params, prepare=True)
            return await cur.fetchall()

    async def _one(self, sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def clients(self, tenant: str) -> list[dict[str, Any]]:
        return await self._all(CLIENTS_SQL, {"tenant": tenant})

    async def client_exists(self, tenant: str, client: str) -> bool:
        row = await self._one(CLIENT_EXISTS_SQL, {"tenant": tenant, "client": client})
        return bool(row and row["found"])

    async def catalog(self, tenant: str, client: str) -> list[dict[str, Any]]:
        return await self._all(CATALOG_SQL, {"tenant": tenant, "client": client})

    async def catalog_version(self, tenant: str, client: str) -> str | None:
        """`CATALOG_VERSION_SQL` for the client; None when it has no catalog item (nothing to cache)."""
        row = await self._one(CATALOG_VERSION_SQL, {"tenant": tenant, "client": client})
        return str(row["version"]) if row and row["items"] else None

    async def settings(self, tenant: str, client: str) -> dict[str, Any] | None:
        return await self._one(SETTINGS_SQL, {"tenant": tenant, "client": client})

    async def contracts(self, tenant: str, client: str) -> list[dict[str, Any]]:
        return await self._all(CONTRACTS_SQL, {"tenant": tenant, "client": client})

    async def contract(self, tenant: str, key: str) -> dict[str, Any] | None:
        return await self._one(CONTRACT_SQL, {"tenant": tenant, "key": key})

    async def ping(self) -> bool:
        async with self.pool.connection() as conn:
            await conn.execute("SELECT 1")
        return True
