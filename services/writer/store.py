"""The PostgreSQL adapter of the writer (psycopg 3 async for batches; SQLAlchemy 2 engine and Core
for the schema, reads and the merge statement).

`AsyncPostgresStore.apply(plan)` (the writer; `PostgresStore.apply` is the same for tools and
tests) applies one batch in ONE transaction:

1. `SET LOCAL ROLE contract_sync_sync_path`: this transaction is the sync path, the only one
   the `contracts_psa_owned_guard` trigger lets change PSA-owned columns of synced contracts (only
   members of that role, i.e. the writer's `contract_sync_writer`, may assume it; see
   `services.common.db.roles`);
2. records every event id in `processed_events`; ids already there are skipped: replaying a
   batch changes nothing (exactly-once effects). Mapped records are first COPYed (binary) into the
   session's temporary stage (created once per connection, `ON COMMIT DELETE ROWS`) and their ids
   inserted from it with one plain INSERT; only when that hits an id already applied (a replay) is
   it undone to a savepoint and the applied ones dropped from the stage first. Other events' ids:
   `INSERT ... ON CONFLICT DO NOTHING RETURNING` from arrays;
3. contract records: one `INSERT ... SELECT ... FROM stage ON CONFLICT DO UPDATE` whose column
   lists and WHERE guard come from `schemas.ownership` via `apply.py`, counted in the same
   statement (created / updated / unchanged per client and correlation id: a few rows per batch
   reach Python, not one per record); retirements in one `UPDATE ... FROM unnest(...)`;
4. the catalog (one upsert, set-based removals), auto-sync flags, "last synced" per client;
5. local edits, with the sync path left again (`SET LOCAL ROLE NONE`: the login role), row by row;
6. catalog state counts of the touched clients, remembered to tell when they change;
7. (with an `OutboxTopics`) the batch's dead letters and sync events into `writer_outbox` (COPY):
   they commit with the batch, so a crash before Kafka acknowledged them loses nothing.

Failure behaviour (the transaction rolled back in every case):
- a data error - SQLSTATE class 22 (data exception) or 23 (integrity constraint violation), the
  ownership guard's CS403, or a value the driver cannot send (a NUL byte in text) - raises
  `StoreRejected`: the batch's data was refused, the caller isolates the offending event;
- a client-side driver error that is not about a value or the connection is raised as it is (a
  bug: the writer isolates the event that causes it, `services.common.poison`);
- a lost or refused connection raises `StoreUnavailable`, and every other database error (a
  revoked grant 42501, a read-only server 25006, internal errors XX000, resources 53xxx, operator
  intervention 57xxx, ...) raises `StoreRefused` (a `StoreUnavailable`): the database, not the
  data, is at fault, and the same batch is retried later.
Error texts name the SQLSTATE, the constraint, table and column, never the server's message or
detail: those can carry row data ("Failing row contains ...", "invalid input syntax ...: <value>").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

import orjson
import psycopg
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    MetaData,
    Table,
    Text,
    and_,
    case,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import JSONB, distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url

from schemas.commands import EditCommand, SetAutoSyncCommand
from schemas.fast import ObservedEvent
from schemas.ownership import PSA_OWNED_COLUMNS, PSA_SEEDED
from schemas.psa import AdditionRemoved, AgreementObserved, AgreementRemoved
from schemas.records import ContractRecordRestored, ContractRecordRetired
from services.common.db import make_engine, sqlalchemy_url
from services.common.db.roles import SYNC_PATH
from services.common.db.tables import contracts
from services.writer.apply import (
    MAPPING_COLUMNS,
    SEEDED_PSA_COLUMNS,
    SOURCE_COLUMNS,
    STAGE_COLUMNS,
    SYNC_COMPARED_COLUMNS,
    StagedRecord,
    StoredContract,
    catalog_removal,
    count_states,
    decide_edit,
    reduce_catalog,
    reduce_records,
)
from services.writer.handlers import (
    Applicable,
    BatchPlan,
    BatchResult,
    ClientKey,
    EditOutcome,
    OutboxMessage,
    OutboxTopics,
    client_of,
    counts_for,
    dead_letters_of,
    events_for,
    outbox_messages,
)

log = logging.getLogger(__name__)


class WriterError(Exception):
    """Base of the writer's errors; `error_class` names the driver error behind it, if any.

    WriterError
    ├── StoreUnavailable   the database could not be reached or dropped the connection (retry)
    │   ├── StoreRefused     it refused the batch, not for its data (privileges, read-only, ...) (retry)
    │   └── ConcurrentApply  another instance applied some of the batch's events meanwhile (retry)
    └── StoreRejected      the database refused the batch's data (isolate the bad event)
    """

    def __init__(self, message: str, error_class: str | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class


class StoreUnavailable(WriterError):
    pass


class StoreRefused(StoreUnavailable):
    """The database refused the batch for a reason that is not its data (privileges, read-only,
    internal or resource errors, shutdown): retried like an unavailable database."""


class StoreRejected(WriterError):
    pass


DATA_ERROR_CLASSES: frozenset[str] = frozenset({"22", "23"})
"""SQLSTATE classes that blame the data: data exception, integrity constraint violation."""
OWNERSHIP_GUARD_SQLSTATE = "CS403"
"""Raised by the `contracts_psa_owned_guard` trigger (a write the ownership rules forbid)."""


def is_data_error(sqlstate: str | None) -> bool:
    """True when a database error with this SQLSTATE blames the statement's data (pure)."""
    return sqlstate is not None and (
        sqlstate[:2] in DATA_ERROR_CLASSES or sqlstate == OWNERSHIP_GUARD_SQLSTATE
    )


def describe_db_error(error: psycopg.Error) -> str:
    """The error's class, SQLSTATE and the schema objects it names - no row data (pure).

    e.g. `CheckViolation (SQLSTATE 23514, constraint contracts_status_check, table contracts)`.
    Errors without a SQLSTATE (the connection failed) keep their text: it names the server, not data.
    """
    if error.sqlstate is None:
        return f"{type(error).__name__}: {error}"[:500]
    diag = error.diag
    parts = [f"SQLSTATE {error.sqlstate}"]
    for label, value in (
        ("constraint", diag.constraint_name),
        ("table", diag.table_name),
        ("column", diag.column_name),
    ):
        if value:
            parts.append(f"{label} {value}")
    return f"{type(error).__name__} ({', '.join(parts)})"


def store_error(error: psycopg.Error) -> WriterError:
    """The store error a driver error becomes (see the module docstring)."""
    text, name = describe_db_error(error), type(error).__name__
    if is_data_error(error.sqlstate) or (error.sqlstate is None and isinstance(error, psycopg.DataError)):
        return StoreRejected(text, name)  # the server's data errors, or a value the driver cannot send
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailable(text, name)
    return StoreRefused(text, name)


class ConcurrentApply(StoreUnavailable):
    """Another writer instance applied some of this batch's events at the same time (rebalance
    overlap); retrying the batch skips them."""


# ---------------------------------------------------------------------------------------------
# The contract merge, built once from the ownership rule list
# ---------------------------------------------------------------------------------------------

_stage_metadata = MetaData()
_TYPES: dict[str, Any] = {c.name: c.type for c in contracts.columns}
_TYPES["event_id"] = contracts.c.last_event_id.type
_TYPES.update(pos=Integer(), topic=Text(), partition=Integer(), offset=BigInteger(), correlation=Text())
# binary COPY has no dumper for char(n), and jsonb arrives as JSON text: both are staged as text
_TYPES.update(billing_currency=Text(), explanation=Text())
STAGE_TABLE = "writer_contract_stage"
STAGE_COPY_COLUMNS: tuple[str, ...] = ("pos", "topic", "partition", "offset", *STAGE_COLUMNS, "correlation")
"""What the writer COPYs per record: batch position and Kafka position, the record's columns, then
its correlation id (to count outcomes per client and correlation in SQL)."""
stage = Table(
    STAGE_TABLE,
    _stage_metadata,
    *(Column(name, _TYPES[name]) for name in STAGE_COPY_COLUMNS),
)


def _stage_ddl() -> str:
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    columns = ", ".join(f'"{name}" {_TYPES[name].compile(dialect=dialect)}' for name in STAGE_COPY_COLUMNS)
    return f"CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} ({columns}) ON COMMIT DELETE ROWS"


STAGE_DDL = _stage_ddl()
_QUOTED_STAGE_COLUMNS = ", ".join(f'"{name}"' for name in STAGE_COPY_COLUMNS)
STAGE_COPY = f"COPY {STAGE_TABLE} ({_QUOTED_STAGE_COLUMNS}) FROM STDIN (FORMAT BINARY)"


def _copy_type(name: str) -> str:
    from sqlalchemy.dialects import postgresql

    compiled = str(_TYPES[name].compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    return {"TIMESTAMP WITH TIME ZONE": "timestamptz", "NUMERIC": "numeric"}.get(compiled, compiled.lower())


STAGE_COPY_TYPES: list[str] = [_copy_type(name) for name in STAGE_COPY_COLUMNS]
"""Type names for `Copy.set_types` (binary COPY needs them)."""

_STAGE_DROP_SEEN = f"""
DELETE FROM {STAGE_TABLE} AS s USING processed_events AS p WHERE p.event_id = s.event_id RETURNING s.pos
"""  # noqa: S608 (table name is a constant)
"""Drops staged records already applied; returns their positions (none, in the usual case)."""

_STAGE_RECORD_IDS = f"""
WITH recorded AS (
    INSERT INTO processed_events (event_id, event_type, topic, "partition", "offset")
    SELECT event_id, 'contract.record.mapped', topic, "partition", "offset" FROM {STAGE_TABLE}
    ON CONFLICT (event_id) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM recorded
"""  # noqa: S608 (table name is a constant)
"""Records the remaining staged ids; fewer rows than staged means another writer recorded some
concurrently (a rebalance overlap): the batch is then retried, and the retry skips them."""

_STAGE_RECORD_IDS_PLAIN = f"""
INSERT INTO processed_events (event_id, event_type, topic, "partition", "offset")
SELECT event_id, 'contract.record.mapped', topic, "partition", "offset" FROM {STAGE_TABLE}
"""  # noqa: S608 (table name is a constant)
"""The usual case, all ids new: a plain INSERT (no speculative insertion); a unique violation
sends the batch down the careful path."""


def _merge_statement(*, distinct: bool = True) -> Any:
    """`INSERT INTO contracts SELECT ... FROM stage ON CONFLICT DO UPDATE ... WHERE ... RETURNING`.

    SET list (one rule list, `schemas.ownership`): source, PSA-owned, `psa_<seeded>` and mapping
    columns from the record; each seeded column from the record unless `local_overrides` has it;
    local columns are not in the list, so a sync can never write them. WHERE: same tenant, not
    older than the stored version, and something actually differs (else the row is untouched and
    counted unchanged).
    """
    target = contracts
    # per contract the staged record with the newest version, the later one on a tie (= reduce_records)
    # (without duplicate keys in the batch the sort is skipped: `distinct=False`)
    newest = (
        select(stage)
        .ext(distinct_on(stage.c.contract_key))
        .order_by(stage.c.contract_key, stage.c.psa_last_updated.desc(), stage.c.pos.desc())
        .subquery("s")
        if distinct
        else select(stage).subquery("s")
    )
    seeded_effective = [newest.c[name] for name in PSA_SEEDED]
    seeded_psa = [newest.c[name].label(f"psa_{name}") for name in PSA_SEEDED]
    names = [
        "contract_key",
        "tenant_id",
        *SOURCE_COLUMNS,
        *PSA_OWNED_COLUMNS,
        *PSA_SEEDED,
        *SEEDED_PSA_COLUMNS,
        *MAPPING_COLUMNS,
        "psa_synced",
        "last_event_id",
    ]
    source = select(
        newest.c.contract_key,
        newest.c.tenant_id,
        *(newest.c[name] for name in SOURCE_COLUMNS),
        *(newest.c[name] for name in PSA_OWNED_COLUMNS),
        *seeded_effective,
        *seeded_psa,
        *(
            sql_cast(newest.c[name], JSONB) if name == "explanation" else newest.c[name]
            for name in MAPPING_COLUMNS
        ),
        true(),
        newest.c.event_id,
    )
    insert = pg_insert(target).from_select(names, source)
    excluded = insert.excluded
    set_: dict[str, Any] = {name: excluded[name] for name in SYNC_COMPARED_COLUMNS}
    for name in PSA_SEEDED:
        set_[name] = case((target.c.local_overrides.has_key(name), target.c[name]), else_=excluded[name])
    newer = excluded.psa_last_updated > target.c.psa_last_updated
    set_["removed_in_psa_at"] = case((newer, None), else_=target.c.removed_in_psa_at)
    set_["psa_synced"] = true()
    set_["last_event_id"] = excluded.last_event_id
    set_["updated_at"] = func.now()
    where = and_(
        target.c.tenant_id == excluded.tenant_id,
        or_(target.c.psa_last_updated.is_(None), excluded.psa_last_updated >= target.c.psa_last_updated),
        or_(
            tuple_(*(target.c[name] for name in SYNC_COMPARED_COLUMNS)).is_distinct_from(
                tuple_(*(excluded[name] for name in SYNC_COMPARED_COLUMNS))
            ),
            not_(target.c.psa_synced),
            and_(target.c.removed_in_psa_at.is_not(None), newer),
        ),
    )
    return insert.on_conflict_do_update(
        index_elements=[target.c.contract_key], set_=set_, where=where
    ).returning(target.c.contract_key, literal_column("(xmax = 0)").label("inserted"))


MERGE = _merge_statement()


def _sql(statement: Any) -> str:
    from sqlalchemy.dialects import postgresql

    compiled = statement.compile(
        dialect=postgresql.psycopg.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    return str(compiled)


MERGE_SQL = _sql(MERGE)
"""The merge as plain SQL (no parameters), run on the raw cursor: no per-row SQLAlchemy overhead."""
MERGE_UNIQUE_SQL = _sql(_merge_statement(distinct=False))
"""The same merge for a stage without duplicate contract keys (no DISTINCT ON sort)."""


def _counted(merge_sql: str) -> str:
    """The merge, counted in the same statement: per (tenant, client, correlation) of the staged
    records, how many created (`inserted` true), updated (false) or left unchanged (null: older,
    equal, another tenant's, or superseded by a newer record of the same contract in the batch).
    A few rows per batch reach Python instead of one per record."""
    returning = " RETURNING contracts.contract_key, (xmax = 0) AS inserted"
    assert merge_sql.endswith(returning), merge_sql[-200:]
    merge = (
        merge_sql[: -len(returning)]
        + " RETURNING contracts.last_event_id AS event_id, (xmax = 0) AS inserted"
    )
    return (
        f"WITH merged AS ({merge}) "  # noqa: S608 (constant SQL)
        f"SELECT s.tenant_id, s.client_id, s.correlation, m.inserted, count(*) FROM {STAGE_TABLE} AS s "
        "LEFT JOIN merged AS m ON m.event_id = s.event_id GROUP BY 1, 2, 3, 4"
    )


MERGE_COUNTED_SQL = _counted(MERGE_SQL)
MERGE_UNIQUE_COUNTED_SQL = _counted(MERGE_UNIQUE_SQL)

# ---------------------------------------------------------------------------------------------
# Plain SQL for the low-volume parts (psycopg `%(name)s` parameters, arrays via unnest)
# ---------------------------------------------------------------------------------------------

_RECORD_IDS = """
INSERT INTO processed_events (event_id, event_type, topic, "partition", "offset")
SELECT * FROM unnest(%(ids)s::uuid[], %(types)s::text[], %(topics)s::text[], %(partitions)s::int[], %(offsets)s::bigint[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""

_RETIRE = """
UPDATE contracts AS c
SET removed_in_psa_at = r.observed_at, updated_at = now(), last_event_id = r.event_id
FROM unnest(%(keys)s::text[], %(tenants)s::text[], %(observed)s::timestamptz[], %(ids)s::uuid[])
     AS r(contract_key, tenant_id, observed_at, event_id)
WHERE c.contract_key = r.contract_key AND c.tenant_id = r.tenant_id AND c.removed_in_psa_at IS NULL
RETURNING c.contract_key
"""

_RESTORE = """
UPDATE contracts AS c
SET removed_in_psa_at = NULL, updated_at = now(), last_event_id = r.event_id
FROM unnest(%(keys)s::text[], %(tenants)s::text[], %(observed)s::timestamptz[], %(ids)s::uuid[])
     AS r(contract_key, tenant_id, observed_at, event_id)
WHERE c.contract_key = r.contract_key AND c.tenant_id = r.tenant_id
  AND c.removed_in_psa_at IS NOT NULL AND c.removed_in_psa_at < r.observed_at
RETURNING c.contract_key
"""

_CATALOG_UPSERT = """
INSERT INTO catalog_items AS ci (contract_key, tenant_id, client_id, kind, agreement_id, addition_id, name,
                                 summary, psa_last_updated, observed_at, last_event_id, psa_digest)
SELECT k, t, cl, kd, ag, ad, n, s::jsonb, v, o, e, d
FROM unnest(%(keys)s::text[], %(tenants)s::text[], %(clients)s::text[], %(kinds)s::text[], %(agreements)s::bigint[],
            %(additions)s::bigint[], %(names)s::text[], %(summaries)s::text[], %(versions)s::timestamptz[],
            %(observed)s::timestamptz[], %(ids)s::uuid[], %(digests)s::text[]) AS x(k, t, cl, kd, ag, ad, n, s, v, o, e, d)
ORDER BY k
ON CONFLICT (contract_key) DO UPDATE SET
    client_id = EXCLUDED.client_id,
    agreement_id = EXCLUDED.agreement_id,
    name = EXCLUDED.name,
    summary = EXCLUDED.summary,
    psa_last_updated = EXCLUDED.psa_last_updated,
    observed_at = EXCLUDED.observed_at,
    last_event_id = EXCLUDED.last_event_id,
    psa_digest = EXCLUDED.psa_digest,
    updated_at = now(),
    removed_at = CASE WHEN ci.removed_at IS NOT NULL AND EXCLUDED.observed_at > ci.removed_at THEN NULL
                      ELSE ci.removed_at END
WHERE ci.tenant_id = EXCLUDED.tenant_id
  AND (EXCLUDED.psa_last_updated, EXCLUDED.observed_at) >= (ci.psa_last_updated, ci.observed_at)
RETURNING ci.tenant_id, ci.client_id
"""

_CATALOG_REMOVE = """
UPDATE catalog_items AS ci
SET removed_at = r.observed_at, updated_at = now(), last_event_id = r.event_id
FROM unnest(%(tenants)s::text[], %(agreements)s::bigint[], %(additions)s::bigint[], %(observed)s::timestamptz[],
            %(ids)s::uuid[]) AS r(tenant_id, agreement_id, addition_id, observed_at, event_id)
WHERE ci.tenant_id = r.tenant_id
  AND ci.agreement_id = r.agreement_id
  AND (r.addition_id IS NULL OR ci.addition_id = r.addition_id)
  AND ci.removed_at IS NULL
  AND ci.observed_at <= r.observed_at
RETURNING ci.tenant_id, ci.client_id
"""

_SYNCED = """
INSERT INTO client_sync_settings AS s (tenant_id, client_id, last_synced_at, last_status, last_error, updated_at)
SELECT t, c, %(now)s, 'ok', NULL, now() FROM unnest(%(tenants)s::text[], %(clients)s::text[]) AS x(t, c)
ORDER BY t, c
ON CONFLICT (tenant_id, client_id) DO UPDATE SET
    last_synced_at = EXCLUDED.last_synced_at, last_status = 'ok', last_error = NULL, updated_at = now()
"""

_FAILED = """
INSERT INTO client_sync_settings AS s (tenant_id, client_id, last_status, last_error, updated_at)
SELECT t, c, 'error', e, now() FROM unnest(%(tenants)s::text[], %(clients)s::text[], %(errors)s::text[]) AS x(t, c, e)
ORDER BY t, c
ON CONFLICT (tenant_id, client_id) DO UPDATE SET
    last_status = 'error', last_error = EXCLUDED.last_error, updated_at = now()
"""

_AUTO_SYNC = """
INSERT INTO client_sync_settings AS s (tenant_id, client_id, auto_sync, auto_sync_changed_at, auto_sync_requested_by)
VALUES (%(tenant)s, %(client)s, %(enabled)s, %(at)s, %(by)s)
ON CONFLICT (tenant_id, client_id) DO UPDATE SET
    auto_sync = EXCLUDED.auto_sync, auto_sync_changed_at = EXCLUDED.auto_sync_changed_at,
    auto_sync_requested_by = EXCLUDED.auto_sync_requested_by, updated_at = now()
RETURNING auto_sync
"""
"""The flag of one client, in per-client offset order (as the mapper and poller apply it): the
last command applied wins, whatever its sender's `time` says; `auto_sync_changed_at` is the
applying transaction's time."""

_CATALOG_COUNTS = """
SELECT x.t, x.c, s.catalog_counts,
       (SELECT coalesce(jsonb_object_agg(state, n), '{}'::jsonb)
          FROM (SELECT state, count(*) AS n FROM catalog_item_states v
                 WHERE v.tenant_id = x.t AND v.client_id = x.c GROUP BY state) q) AS counts
FROM unnest(%(tenants)s::text[], %(clients)s::text[]) AS x(t, c)
LEFT JOIN client_sync_settings s ON s.tenant_id = x.t AND s.client_id = x.c
"""

_SAVE_COUNTS = """
INSERT INTO client_sync_settings AS s (tenant_id, client_id, catalog_counts)
SELECT t, c, n::jsonb FROM unnest(%(tenants)s::text[], %(clients)s::text[], %(counts)s::text[]) AS x(t, c, n)
ORDER BY t, c
ON CONFLICT (tenant_id, client_id) DO UPDATE SET catalog_counts = EXCLUDED.catalog_counts, updated_at = now()
"""

_CONTRACT_COLUMNS = [c.name for c in contracts.columns]
_LOCK_CONTRACT = (
    f"SELECT {', '.join(_CONTRACT_COLUMNS)} FROM contracts WHERE contract_key = %(key)s FOR UPDATE"  # noqa: S608
)


def _stored(row: Sequence[Any]) -> StoredContract:
    values = dict(zip(_CONTRACT_COLUMNS, row, strict=True))
    return StoredContract(
        contract_key=values["contract_key"],
        tenant_id=values["tenant_id"],
        client_id=values["client_id"],
        psa_synced=values["psa_synced"],
        psa_last_updated=values["psa_last_updated"],
        values=values,
        local_overrides=values["local_overrides"] or {},
        removed_in_psa_at=values["removed_in_psa_at"],
    )


_BEGIN_SYNC_PATH = f"SELECT now(), set_config('role', '{SYNC_PATH}', true)"
"""Starts a batch: the transaction's time, and `SET LOCAL ROLE contract_sync_sync_path`."""


async def _prepare_session(conn: psycopg.AsyncConnection[Any]) -> None:
    """Once per connection (autocommit, outside any batch transaction, so a rolled-back batch
    cannot take it along): the session's temporary stage table (`ON COMMIT DELETE ROWS`), owned by
    the sync path role, which fills it."""
    await conn.execute(f'SET ROLE "{SYNC_PATH}"')
    try:
        await conn.execute(STAGE_DDL)
    finally:
        await conn.execute("RESET ROLE")


async def _set_sync_path(cur: psycopg.AsyncCursor[Any], on: bool) -> None:
    await cur.execute(f'SET LOCAL ROLE "{SYNC_PATH}"' if on else "SET LOCAL ROLE NONE")


def _json(value: Any) -> str:
    return orjson.dumps(value, default=_json_default).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


@dataclass(frozen=True)
class StoreOptions:
    pool_size: int = 2
    connect_timeout_s: int = 5
    statement_timeout_ms: int = 60_000


class PostgresStore:
    """Synchronous access to the store: reads, pruning, and `apply` for tools and tests (the writer
    itself uses `AsyncPostgresStore`). Thread-safe (one pooled connection per call)."""

    def __init__(self, database_url: str, options: StoreOptions | None = None) -> None:
        opts = options or StoreOptions()
        self.options = opts
        self.conninfo = psycopg_conninfo(database_url)
        self.engine: Engine = make_engine(
            database_url,
            pool_size=opts.pool_size,
            max_overflow=2,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": opts.connect_timeout_s,
                "options": f"-c statement_timeout={opts.statement_timeout_ms}",
                "application_name": "contract-sync-writer",
            },
        )

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> bool:
        """True when the database answers (readiness)."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except sa_exc.SQLAlchemyError:
            return False

    def prune_processed(self, retention_days: int) -> int:
        """Forget applied event ids older than `retention_days` (keep it above the input topics'
        retention, so no message that can still be re-read loses its id). Returns rows deleted."""
        try:
            with self.engine.begin() as conn:
                raw = cast(psycopg.Connection[Any], conn.connection.driver_connection)
                with raw.cursor() as cur:
                    cur.execute(
                        "DELETE FROM processed_events WHERE processed_at < now() - make_interval(days => %s)",
                        (retention_days,),
                    )
                    return cur.rowcount
        except sa_exc.SQLAlchemyError as error:
            raise StoreUnavailable(f"{type(error).__name__}") from error

    # -- the batch ------------------------------------------------------------------------
    def apply(self, plan: BatchPlan, outbox: OutboxTopics | None = None) -> BatchResult:
        """Apply `plan` in one transaction (a short-lived connection; for CLIs, tools and tests).
        Same guarantees and errors as `AsyncPostgresStore.apply`. Not for use inside a running loop."""
        return asyncio.run(_apply_once(self.conninfo, self.options, plan, outbox))


def psycopg_conninfo(database_url: str) -> str:
    """A libpq URL for psycopg from a SQLAlchemy URL (`postgresql+psycopg://...` -> `postgresql://...`)."""
    url = make_url(sqlalchemy_url(database_url)).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _connect_kwargs(options: StoreOptions) -> dict[str, Any]:
    return {
        "connect_timeout": options.connect_timeout_s,
        "options": f"-c statement_timeout={options.statement_timeout_ms}",
        "application_name": "contract-sync-writer",
        "autocommit": True,  # transactions are explicit: `conn.transaction()`
    }


_OUTBOX_COPY = (
    "COPY writer_outbox (id, topic, key, value, header_names, header_values) FROM STDIN (FORMAT BINARY)"
)
_OUTBOX_TYPES = ["uuid", "text", "bytea", "bytea", "text[]", "bytea[]"]
_OUTBOX_READ = """
SELECT id, topic, key, value, header_names, header_values FROM writer_outbox
WHERE topic = ANY(%(topics)s::text[]) ORDER BY seq
"""
_OUTBOX_DELETE = "DELETE FROM writer_outbox WHERE id = ANY(%(ids)s::uuid[])"


async def _write_outbox(cur: psycopg.AsyncCursor[Any], messages: Sequence[OutboxMessage]) -> None:
    async with cur.copy(_OUTBOX_COPY) as copy:
        copy.set_types(_OUTBOX_TYPES)
        for m in messages:
            await copy.write_row(
                (m.id, m.topic, m.key, m.value, [h[0] for h in m.headers], [h[1] for h in m.headers])
            )


def _outbox_row(row: Sequence[Any]) -> OutboxMessage:
    ident, topic, key, value, names, values = row
    return OutboxMessage(
        ident,
        topic,
        bytes(key) if key is not None else None,
        bytes(value) if value is not None else None,
        tuple((name, bytes(v)) for name, v in zip(names, values, strict=True)),
    )


async def _apply_on(
    conn: psycopg.AsyncConnection[Any], plan: BatchPlan, outbox: OutboxTopics | None = None
) -> BatchResult:
    """Apply `plan` in one transaction on `conn`, mapping driver errors to the store's errors.
    With `outbox`, the batch's dead letters and sync events are written to `writer_outbox` in the
    same transaction (`result.outbox`, `result.dead_letters`): committed together or not at all."""
    try:
        async with conn.transaction(), conn.cursor() as cur:
            result = await _BatchApplier(cur).apply(plan)
            if plan.outbox_done:
                await cur.execute(_OUTBOX_DELETE, {"ids": plan.outbox_done})
            if outbox is not None:
                result.dead_letters = (
                    dead_letters_of(plan, result) if result.rejected_events else list(plan.dead_letters)
                )
                result.outbox = outbox_messages(
                    result.dead_letters, events_for(result, result.dead_letters), outbox
                )
                if result.outbox:
                    await _write_outbox(cur, result.outbox)
            return result
    except psycopg.Error as error:
        if error.sqlstate is None and not isinstance(
            error, psycopg.OperationalError | psycopg.InterfaceError | psycopg.DataError
        ):
            raise  # the driver refused to send something (a bug): the caller's poison guard isolates it
        raise store_error(error) from error


async def _apply_once(
    conninfo: str, options: StoreOptions, plan: BatchPlan, outbox: OutboxTopics | None = None
) -> BatchResult:
    try:
        conn = await psycopg.AsyncConnection.connect(conninfo, **_connect_kwargs(options))
    except psycopg.Error as error:
        raise StoreUnavailable(describe_db_error(error)) from error
    try:
        try:
            await _prepare_session(conn)
        except psycopg.Error as error:
            raise StoreUnavailable(describe_db_error(error)) from error
        return await _apply_on(conn, plan, outbox)
    finally:
        await conn.close()


class AsyncPostgresStore:
    """The writer's unit of work on PostgreSQL, on the event loop (psycopg 3 async, one connection).

    `apply` runs one batch in one transaction (see the module docstring). While PostgreSQL works on
    a statement the loop is free: the writer polls and parses the next batch meanwhile, without a
    second thread competing for the GIL. A broken connection is dropped and re-opened by the next
    call. Not for concurrent use: one `apply` at a time.
    """

    def __init__(self, database_url: str, options: StoreOptions | None = None) -> None:
        self.options = options or StoreOptions()
        self.conninfo = psycopg_conninfo(database_url)
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, **_connect_kwargs(self.options))
                try:
                    await _prepare_session(conn)
                except psycopg.Error:
                    await conn.close()
                    raise
                self._conn = conn
            except psycopg.Error as error:
                raise StoreUnavailable(describe_db_error(error)) from error
        return self._conn

    async def apply(self, plan: BatchPlan, outbox: OutboxTopics | None = None) -> BatchResult:
        """Apply `plan` in one transaction; with `outbox`, its outgoing messages are written to
        `writer_outbox` in the same transaction (see `_apply_on`)."""
        conn = await self._connection()
        try:
            return await _apply_on(conn, plan, outbox)
        except StoreUnavailable:
            await self._drop()
            raise

    async def read_outbox(self, topics: Sequence[str]) -> list[OutboxMessage]:
        """Every outbox message for `topics`, in the order they were written (oldest first)."""
        conn = await self._connection()
        try:
            cur = await conn.execute(_OUTBOX_READ, {"topics": list(topics)})
            return [_outbox_row(row) for row in await cur.fetchall()]
        except psycopg.Error as error:
            await self._drop()
            raise StoreUnavailable(describe_db_error(error)) from error

    async def delete_outbox(self, ids: Sequence[UUID]) -> int:
        """Forget published outbox messages; returns rows deleted (idempotent)."""
        conn = await self._connection()
        try:
            cur = await conn.execute(_OUTBOX_DELETE, {"ids": list(ids)})
            return cur.rowcount
        except psycopg.Error as error:
            await self._drop()
            raise StoreUnavailable(describe_db_error(error)) from error

    async def ping(self) -> bool:
        """True when the database answers (readiness); uses its own short connection."""
        try:
            async with await psycopg.AsyncConnection.connect(
                self.conninfo, **_connect_kwargs(self.options)
            ) as conn:
                await conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    async def prune_processed(self, retention_days: int) -> int:
        """See `PostgresStore.prune_processed`."""
        conn = await self._connection()
        try:
            cur = await conn.execute(
                "DELETE FROM processed_events WHERE processed_at < now() - make_interval(days => %s)",
                (retention_days,),
            )
            return cur.rowcount
        except psycopg.Error as error:
            await self._drop()
            raise StoreUnavailable(describe_db_error(error)) from error

    async def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await self._drop()


class _BatchApplier:
    """Applies one plan on an open cursor inside the caller's transaction (the logic of `apply`)."""

    def __init__(self, cur: psycopg.AsyncCursor[Any]) -> None:
        self.cur = cur

    async def apply(self, plan: BatchPlan) -> BatchResult:
        cur = self.cur
        result = BatchResult()
        # this transaction is the sync path; its time is the batch's `last_synced_at` (one round trip)
        await cur.execute(_BEGIN_SYNC_PATH)
        now_row = await cur.fetchone()
        assert now_row is not None
        now: datetime = now_row[0]
        # Mapped records (the bulk) are staged with COPY and their ids recorded from the stage;
        # every other event's id is recorded from arrays.
        mapped: list[tuple[int, Applicable]] = []
        others: list[tuple[int, Applicable]] = []
        for pos, applicable in enumerate(plan.events):
            (mapped if isinstance(applicable.event, StagedRecord) else others).append((pos, applicable))
        fresh_mapped = await self._stage_records(cur, mapped) if mapped else set()
        fresh_others: list[tuple[int, Any]] = []
        if others:
            fresh_ids = await self._record_ids(cur, [a for _, a in others])
            fresh_others = [(pos, a.event) for pos, a in others if a.event.id in fresh_ids]
        result.fresh = (len(mapped) if fresh_mapped is None else len(fresh_mapped)) + len(fresh_others)
        result.duplicates = len(plan.events) - result.fresh
        events = [event for _, event in fresh_others]
        touched: set[ClientKey] = set()
        synced_clients: set[ClientKey] = set()

        retired = [(pos, e) for pos, e in fresh_others if isinstance(e, ContractRecordRetired)]
        if fresh_mapped is None or fresh_mapped or retired:
            await self._apply_records(cur, mapped, fresh_mapped, retired, result, synced_clients)
            touched.update(synced_clients)
        restored = [e for _, e in fresh_others if isinstance(e, ContractRecordRestored)]
        if restored:
            await self._restore(cur, restored, result, synced_clients)
            touched.update(synced_clients)

        observed = [e for e in events if isinstance(e, ObservedEvent | AgreementObserved)]
        removals = [e for e in events if isinstance(e, AgreementRemoved | AdditionRemoved)]
        if observed:
            touched.update(await self._upsert_catalog(cur, observed))
        if removals:
            touched.update(await self._remove_catalog(cur, removals))

        if synced_clients:
            tenants, clients = zip(*sorted(synced_clients), strict=True)
            await cur.execute(_SYNCED, {"now": now, "tenants": list(tenants), "clients": list(clients)})
            result.last_synced_at = dict.fromkeys(synced_clients, now)
        failed = {d.client: d.reason for d in plan.dead_letters if d.client is not None}
        if failed:
            keys = sorted(failed)
            await cur.execute(
                _FAILED,
                {
                    "tenants": [k[0] for k in keys],
                    "clients": [k[1] for k in keys],
                    "errors": [f"dead-lettered: {failed[k]}" for k in keys],
                },
            )

        for event in events:
            if isinstance(event, SetAutoSyncCommand):
                data = event.data
                await cur.execute(
                    _AUTO_SYNC,
                    {
                        "tenant": data.tenant_id,
                        "client": data.client_id,
                        "enabled": data.enabled,
                        "at": now,
                        "by": data.requested_by,
                    },
                )
                if await cur.fetchone() is not None:
                    result.auto_sync[(data.tenant_id, data.client_id)] = data.enabled

        edits = [e for e in events if isinstance(e, EditCommand)]
        if edits:
            await _set_sync_path(cur, False)
            for edit in edits:
                await self._apply_edit(cur, edit, result)
            await _set_sync_path(cur, True)

        if touched:
            result.catalog_changed = await self._catalog_counts(cur, touched)
        return result

    async def _record_ids(
        self, cur: psycopg.AsyncCursor[Any], applicables: Sequence[Applicable]
    ) -> set[UUID]:
        """Insert the events' ids into `processed_events`; returns the ids not processed before."""
        await cur.execute(
            _RECORD_IDS,
            {
                "ids": [a.event.id for a in applicables],
                "types": [a.event.type for a in applicables],
                "topics": [a.message.topic for a in applicables],
                "partitions": [a.message.partition for a in applicables],
                "offsets": [a.message.offset for a in applicables],
            },
        )
        return {row[0] for row in await cur.fetchall()}

    async def _stage_records(
        self, cur: psycopg.AsyncCursor[Any], mapped: Sequence[tuple[int, Applicable]]
    ) -> set[int] | None:
        """COPY the mapped records into the stage (created with the session: `_prepare_session`)
        and record their ids; returns the fresh positions, None when all are fresh (the usual case).
        Afterwards the stage holds exactly the fresh records."""
        async with cur.copy(STAGE_COPY) as copy:
            copy.set_types(STAGE_COPY_TYPES)
            # rows are encoded by the formatter directly and written in ~32 KiB chunks: one await per
            # chunk instead of one per record
            encode = copy.formatter.write_row
            for pos, (event, message) in mapped:
                record = cast(StagedRecord, event)
                chunk = encode(
                    (
                        pos,
                        message.topic,
                        message.partition,
                        message.offset,
                        *record.values,
                        record.correlationid,
                    )
                )
                if chunk:
                    await copy.write(chunk)
        # Usual case: nothing was applied before, and one INSERT records every id. Otherwise undo
        # that INSERT, drop the already-applied records from the stage and record the rest.
        # (three statements, one round trip: without parameters psycopg sends them as one query, and
        # the failing INSERT stops the rest)
        try:
            await cur.execute(
                f"SAVEPOINT record_ids; {_STAGE_RECORD_IDS_PLAIN.strip()}; RELEASE SAVEPOINT record_ids"
            )
        except psycopg.errors.UniqueViolation:
            await cur.execute("ROLLBACK TO SAVEPOINT record_ids")
        else:
            return None
        await cur.execute(_STAGE_DROP_SEEN)
        seen = {row[0] for row in await cur.fetchall()}
        fresh = {pos for pos, _ in mapped if pos not in seen}
        if fresh:
            await cur.execute(_STAGE_RECORD_IDS)
            recorded = await cur.fetchone()
            if recorded is None or recorded[0] != len(fresh):
                raise ConcurrentApply(
                    f"{len(fresh) - (recorded[0] if recorded else 0)} events recorded concurrently"
                )
        return fresh

    async def _apply_records(
        self,
        cur: psycopg.AsyncCursor[Any],
        mapped: Sequence[tuple[int, Applicable]],
        fresh: set[int] | None,
        retired: list[tuple[int, ContractRecordRetired]],
        result: BatchResult,
        synced_clients: set[ClientKey],
    ) -> None:
        """Merge the staged (= fresh mapped) records in one statement that also counts their
        outcomes per client and correlation; then retire. `fresh`: positions of the fresh mapped
        records, None for all of them."""
        if mapped and (fresh is None or fresh):
            # a DISTINCT ON sort only when a contract appears twice (the newest one wins)
            unique = len({cast(StagedRecord, a.event).contract_key for _, a in mapped}) == len(mapped)
            await cur.execute(MERGE_UNIQUE_COUNTED_SQL if unique else MERGE_COUNTED_SQL)
            for tenant_id, client_id, correlation, inserted, n in await cur.fetchall():
                synced_clients.add((tenant_id, client_id))
                counts = counts_for(result, tenant_id, client_id, correlation)
                if inserted is None:
                    counts.unchanged += n
                elif inserted:
                    counts.created += n
                else:
                    counts.updated += n
        if not retired:
            return
        # A retire applies only after the contract's last fresh mapped record of the batch.
        records: list[tuple[int, StagedRecord | ContractRecordRetired]] = [
            (pos, cast(StagedRecord, a.event)) for pos, a in mapped if fresh is None or pos in fresh
        ]
        records.extend(retired)
        records.sort(key=lambda item: item[0])
        retires = reduce_records(records).retires
        synced_clients.update(client_of(event) for _, event in retired)
        if retires:
            await cur.execute(
                _RETIRE,
                {
                    "keys": [r.contract_key for r in retires],
                    "tenants": [r.tenant_id for r in retires],
                    "observed": [r.observed_at for r in retires],
                    "ids": [r.event_id for r in retires],
                },
            )
            done = {row[0] for row in await cur.fetchall()}
            for retire in retires:
                counts = counts_for(result, retire.tenant_id, retire.client_id, retire.correlation_id)
                if retire.contract_key in done:
                    counts.retired += 1
                else:
                    counts.unchanged += 1

    async def _restore(
        self,
        cur: psycopg.AsyncCursor[Any],
        restored: list[ContractRecordRestored],
        result: BatchResult,
        synced_clients: set[ClientKey],
    ) -> None:
        """Make contracts active again whose retirement was observed before the restore (after the
        batch's mapped records and retires: a later retire in the same batch, observed later, wins)."""
        await cur.execute(
            _RESTORE,
            {
                "keys": [e.data.contract_key for e in restored],
                "tenants": [e.data.tenant_id for e in restored],
                "observed": [e.data.observed_at for e in restored],
                "ids": [e.id for e in restored],
            },
        )
        done = {row[0] for row in await cur.fetchall()}
        for event in restored:
            data = event.data
            synced_clients.add((data.tenant_id, data.client_id))
            counts = counts_for(result, data.tenant_id, data.client_id, event.correlationid)
            if data.contract_key in done:
                counts.updated += 1
            else:
                counts.unchanged += 1

    async def _upsert_catalog(
        self, cur: psycopg.AsyncCursor[Any], observed: list[ObservedEvent | AgreementObserved]
    ) -> set[ClientKey]:
        rows = reduce_catalog(observed)
        touched = {(e.data.tenant_id, e.data.client_id) for e in observed}
        await cur.execute(
            _CATALOG_UPSERT,
            {
                "keys": [r.contract_key for r in rows],
                "tenants": [r.tenant_id for r in rows],
                "clients": [r.client_id for r in rows],
                "kinds": [r.kind for r in rows],
                "agreements": [r.agreement_id for r in rows],
                "additions": [r.addition_id for r in rows],
                "names": [r.name for r in rows],
                "summaries": [_json(r.summary) for r in rows],
                "versions": [r.psa_last_updated for r in rows],
                "observed": [r.observed_at for r in rows],
                "ids": [r.event_id for r in rows],
                "digests": [r.psa_digest for r in rows],
            },
        )
        touched.update((row[0], row[1]) for row in await cur.fetchall())
        return touched

    async def _remove_catalog(
        self, cur: psycopg.AsyncCursor[Any], removals: list[AgreementRemoved | AdditionRemoved]
    ) -> set[ClientKey]:
        rows = [catalog_removal(e) for e in removals]
        await cur.execute(
            _CATALOG_REMOVE,
            {
                "tenants": [r.tenant_id for r in rows],
                "agreements": [r.agreement_id for r in rows],
                "additions": [r.addition_id for r in rows],
                "observed": [r.observed_at for r in rows],
                "ids": [r.event_id for r in rows],
            },
        )
        touched = {(r.tenant_id, r.client_id) for r in rows}
        touched.update((row[0], row[1]) for row in await cur.fetchall())
        return touched

    async def _apply_edit(
        self, cur: psycopg.AsyncCursor[Any], edit: EditCommand, result: BatchResult
    ) -> None:
        data = edit.data
        await cur.execute(_LOCK_CONTRACT, {"key": data.contract_id})
        row = await cur.fetchone()
        stored = _stored(row) if row is not None else None
        decision = decide_edit(
            tenant_id=data.tenant_id,
            client_id=data.client_id,
            contract_id=data.contract_id,
            changes=data.changes,
            stored=stored,
        )
        result.edits.append(EditOutcome(edit, decision))
        if not decision.accepted:
            if decision.reason in ("unknown_contract", "cross_tenant"):
                result.rejected_events.append((edit.id, decision.reason, decision.message))
            log.info(
                "edit rejected",
                extra={
                    "command_id": str(edit.id),
                    "contract_id": data.contract_id,
                    "reason": decision.reason,
                },
            )
            return
        assignments = [f'"{name}" = %({name})s' for name in decision.columns]
        params: dict[str, Any] = dict(decision.columns)
        if "reminders" in params:
            params["reminders"] = psycopg.types.json.Jsonb(params["reminders"])
        assignments.append(
            "local_overrides = (local_overrides - %(reverted)s::text[]) || %(overrides)s::jsonb"
        )
        params["overrides"] = _json(decision.overrides)
        params["reverted"] = list(decision.reverted)
        params["key"] = data.contract_id
        params["event_id"] = edit.id
        # Column names come from the ownership rule list (never from the command), values are bound.
        await cur.execute(
            f"UPDATE contracts SET {', '.join(assignments)}, updated_at = now(), last_event_id = %(event_id)s "  # noqa: S608
            "WHERE contract_key = %(key)s",
            params,
        )

    async def _catalog_counts(
        self, cur: psycopg.AsyncCursor[Any], touched: Iterable[ClientKey]
    ) -> dict[ClientKey, dict[str, int]]:
        keys = sorted(touched)
        await cur.execute(_CATALOG_COUNTS, {"tenants": [k[0] for k in keys], "clients": [k[1] for k in keys]})
        changed: dict[ClientKey, dict[str, int]] = {}
        for tenant_id, client_id, before, after in await cur.fetchall():
            counts = count_states([])
            counts.update({state: int(n) for state, n in (after or {}).items()})
            if before != counts and not (before is None and not any(counts.values())):
                changed[(tenant_id, client_id)] = counts
        if changed:
            ordered = sorted(changed)
            await cur.execute(
                _SAVE_COUNTS,
                {
                    "tenants": [k[0] for k in ordered],
                    "clients": [k[1] for k in ordered],
                    "counts": [_json(changed[k]) for k in ordered],
                },
            )
        return changed


# ---------------------------------------------------------------------------------------------
# Reads for the CLIs and tests
# ---------------------------------------------------------------------------------------------

_CATALOG_LIST = """
SELECT contract_key, kind, agreement_id, addition_id, name, summary, psa_last_updated, observed_at, removed_at,
       contract_psa_last_updated, state, psa_digest, contract_psa_digest
FROM catalog_item_states
WHERE tenant_id = %(tenant)s AND client_id = %(client)s
ORDER BY agreement_id, addition_id NULLS FIRST
"""

_CONTRACTS_LIST = (
    f"SELECT {', '.join(_CONTRACT_COLUMNS)} FROM contracts "  # noqa: S608 (column names from the metadata)
    "WHERE tenant_id = %(tenant)s AND client_id = %(client)s "
    "ORDER BY agreement_id NULLS LAST, addition_id NULLS FIRST, contract_key"
)

_SETTINGS = """
SELECT auto_sync, auto_sync_changed_at, auto_sync_requested_by, last_synced_at, last_status, last_error,
       catalog_counts, updated_at
FROM client_sync_settings WHERE tenant_id = %(tenant)s AND client_id = %(client)s
"""


def _rows(engine: Engine, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        raw = cast(psycopg.Connection[Any], conn.connection.driver_connection)
        with raw.cursor() as cur:
            cur.execute(sql, params)
            names = [d.name for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def list_catalog(engine: Engine, tenant_id: str, client_id: str) -> list[dict[str, Any]]:
    """The import dialog's items of one client with their state, agreements before their additions."""
    return _rows(engine, _CATALOG_LIST, {"tenant": tenant_id, "client": client_id})


def list_contracts(engine: Engine, tenant_id: str, client_id: str) -> list[dict[str, Any]]:
    """Every contract of one client, every column."""
    return _rows(engine, _CONTRACTS_LIST, {"tenant": tenant_id, "client": client_id})


def get_contract(engine: Engine, contract_key: str) -> dict[str, Any] | None:
    rows = _rows(engine, _LOCK_CONTRACT.replace(" FOR UPDATE", ""), {"key": contract_key})
    return rows[0] if rows else None


def sync_settings(engine: Engine, tenant_id: str, client_id: str) -> dict[str, Any] | None:
    rows = _rows(engine, _SETTINGS, {"tenant": tenant_id, "client": client_id})
    return rows[0] if rows else None
