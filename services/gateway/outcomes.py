"""Record the outcome events of commands: every sync event with a `correlationid` and an outcome type
(applied, rejected, failed) is stored in `gateway_command_events`, keyed by its event id.

At-least-once in, exactly-once effect: offsets are committed only after the rows are committed, and a
replayed event hits `ON CONFLICT (event_id) DO NOTHING`. Replicas share one consumer group, so each
event is recorded by one of them. An unreadable event is skipped with a warning (the services own
the dead-letter path for their inputs; this is a read-only view).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from uuid import UUID

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from psycopg_pool import AsyncConnectionPool

from services.common.metrics import OUTCOMES_RECORDED
from services.gateway.command_store import OUTCOME_TYPES

log = logging.getLogger(__name__)

_INSERT = """
INSERT INTO gateway_command_events (event_id, command_id, tenant_id, event_type, event_time, data)
SELECT * FROM unnest(%(ids)s::uuid[], %(commands)s::uuid[], %(tenants)s::text[], %(types)s::text[],
                     %(times)s::timestamptz[], %(data)s::jsonb[])
ON CONFLICT (event_id) DO NOTHING
"""


def outcome_row(value: bytes | None) -> tuple[UUID, UUID, str, str, str, str] | None:
    """`(event id, command id, tenant, type, time, data JSON)` of an outcome event, else None (pure)."""
    if not value:
        return None
    try:
        event = orjson.loads(value)
        if not isinstance(event, dict) or event.get("type") not in OUTCOME_TYPES:
            return None
        correlation = event.get("correlationid")
        if not isinstance(correlation, str):
            return None
        tenant = event.get("tenantid")
        if not isinstance(tenant, str):
            return None
        return (
            UUID(str(event["id"])),
            UUID(correlation),
            tenant,
            str(event["type"]),
            str(event["time"]),
            orjson.dumps(event.get("data") or {}).decode(),
        )
    except (ValueError, KeyError, TypeError):
        return None


class OutcomeRecorder:
    """Consume the sync events and store the outcome events until `stop()`."""

    def __init__(self, consumer: AIOKafkaConsumer, pool: AsyncConnectionPool) -> None:
        self.consumer = consumer
        self.pool = pool
        self.recorded = 0
        self._stopping = asyncio.Event()
        self.assigned = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def _store(self, rows: list[tuple[UUID, UUID, str, str, str, str]]) -> None:
        params: dict[str, Any] = {
            "ids": [r[0] for r in rows],
            "commands": [r[1] for r in rows],
            "tenants": [r[2] for r in rows],
            "types": [r[3] for r in rows],
            "times": [r[4] for r in rows],
            "data": [r[5] for r in rows],
        }
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(_INSERT, params)

    async def run(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                batch = await self.consumer.getmany(timeout_ms=500, max_records=1000)
                if self.consumer.assignment():
                    self.assigned.set()
                rows = [
                    row
                    for records in batch.values()
                    for record in records
                    if (row := outcome_row(record.value)) is not None
                ]
                if rows:
                    await self._store(rows)
                    self.recorded += len(rows)
                    OUTCOMES_RECORDED.inc(len(rows))
                if batch:
                    await self.consumer.commit()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError, Exception) as error:  # keep serving; retry the batch
                log.warning("recording command outcomes failed; retrying: %s", type(error).__name__)
                with contextlib.suppress(Exception):
                    for tp in self.consumer.assignment():
                        committed = await self.consumer.committed(tp)
                        if committed is not None:
                            self.consumer.seek(tp, committed)
                        else:
                            await self.consumer.seek_to_beginning(tp)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
