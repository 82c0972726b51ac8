"""Publishing commands exactly once per request, and reading their outcome.

`CommandStore.submit` records the command in `gateway_commands` and publishes it to
`sync.commands.v1` in one PostgreSQL transaction that holds the row's lock while the broker
acknowledges:
- with an `Idempotency-Key`, a retry (same tenant and key) finds the row, waits for the first
  request's transaction, and answers the same command id without publishing again; the same key
  with a different request is refused (`IdempotencyConflict`);
- when publishing fails the transaction rolls back, nothing is recorded, and a retry publishes anew
  (the broker never saw the first);
- the command's envelope id is the command id, so every outcome event carries it as `correlationid`.

`command_state` derives `pending | applied | rejected | failed` from the outcome events the gateway
recorded (`gateway_command_events`, see `outcomes.py`), for the caller's tenant only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from schemas.envelope import CloudEvent

REJECTION_TYPES = ("sync.command.rejected", "sync.edit.rejected")
FAILURE_TYPES = ("sync.failed",)
APPLIED_TYPES = (
    "sync.contracts.applied",
    "sync.auto_sync.changed",
    "sync.poll.completed",
    "sync.edit.applied",
)
OUTCOME_TYPES = REJECTION_TYPES + FAILURE_TYPES + APPLIED_TYPES
_COUNTED = ("created", "updated", "unchanged", "retired", "agreements_seen", "agreements_changed",
            "agreements_removed", "additions_removed")  # fmt: skip


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request."""


def request_hash(method: str, path: str, body: Any) -> str:
    """A fingerprint of a request: method, path and canonical JSON body (pure)."""
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(f"{method} {path} ".encode() + canonical).hexdigest()


@dataclass(frozen=True)
class Submitted:
    command_id: UUID
    replayed: bool
    """True when an earlier request with the same Idempotency-Key already published it."""


Publish = Callable[[CloudEvent], Awaitable[None]]

_INSERT = """
INSERT INTO gateway_commands (command_id, tenant_id, client_id, command_type, requested_by, idempotency_key,
                              request_hash, contract_key)
VALUES (%(id)s, %(tenant)s, %(client)s, %(type)s, %(by)s, %(key)s, %(hash)s, %(contract)s)
ON CONFLICT DO NOTHING
"""
_LOCK_BY_KEY = """
SELECT command_id, request_hash, published_at FROM gateway_commands
WHERE tenant_id = %(tenant)s AND idempotency_key = %(key)s FOR UPDATE
"""
_MARK_PUBLISHED = "UPDATE gateway_commands SET published_at = now() WHERE command_id = %(id)s"

_STATE = """
SELECT g.command_id, g.command_type, g.client_id, g.contract_key, g.requested_by, g.created_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object('event_id', e.event_id, 'type', e.event_type,
                                                     'time', e.event_time, 'data', e.data)
                                  ORDER BY e.event_time, e.recorded_at)
                 FROM gateway_command_events e WHERE e.command_id = g.command_id AND e.tenant_id = g.tenant_id), '[]'::jsonb) AS events
FROM gateway_commands g
WHERE g.tenant_id = %(tenant)s AND g.command_id = %(id)s AND g.published_at IS NOT NULL
"""


def summarise(events: list[dict[str, Any]]) -> tuple[str, str | None, str | None, dict[str, int]]:
    """Status, reason, message and summed counts of a command's outcome events (pure).

    Any rejection wins (the command was refused), then a failure, then an applied event; none yet
    is `pending`."""
    counts: dict[str, int] = {}
    for event in events:
        data = event.get("data") or {}
        for name in _COUNTED:
            value = data.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                counts[name] = counts.get(name, 0) + value
    for kinds, status in ((REJECTION_TYPES, "rejected"), (FAILURE_TYPES, "failed")):
        for event in events:
            if event["type"] in kinds:
                data = event.get("data") or {}
                reason = data.get("reason") or data.get("error_code")
                return status, reason, data.get("message"), counts
    if any(event["type"] in APPLIED_TYPES for event in events):
        return "applied", None, None, counts
    return "pending", None, None, counts


class CommandStore:
    def __init__(self, pool: AsyncConnectionPool, publish: Publish) -> None:
        self.pool = pool
        self.publish = publish

    async def submit(
        self,
        command: CloudEvent,
        *,
        requested_by: str,
        idempotency_key: str | None,
        fingerprint: str,
        contract_key: str | None = None,
    ) -> Submitted:
        """Record and publish `command` once (see the module's guarantees)."""
        params = {
            "id": command.id,
            "tenant": command.tenantid,
            "client": command.data.client_id,
            "type": command.type,
            "by": requested_by,
            "key": idempotency_key,
            "hash": fingerprint,
            "contract": contract_key,
        }
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(_INSERT, params)
            if idempotency_key is not None:
                await cur.execute(_LOCK_BY_KEY, params)
                row = await cur.fetchone()
                if row is None:  # pragma: no cover - the insert or a committed conflict left one
                    raise RuntimeError("idempotency row vanished")
                existing_id, existing_hash, published_at = row
                if existing_hash != fingerprint:
                    raise IdempotencyConflict(idempotency_key)
                if existing_id != command.id and published_at is not None:
                    return Submitted(existing_id, replayed=True)
                if existing_id != command.id:  # pragma: no cover - an unpublished row is never committed
                    raise RuntimeError("unpublished idempotency row")
            await self.publish(command)
            await cur.execute(_MARK_PUBLISHED, params)
        return Submitted(command.id, replayed=False)

    async def state(self, tenant: str, command_id: UUID) -> dict[str, Any] | None:
        """The command of `tenant` with its outcome, or None (unknown, or another tenant's)."""
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_STATE, {"tenant": tenant, "id": command_id})
            row = await cur.fetchone()
        if row is None:
            return None
        events = list(row.pop("events"))
        status, reason, message, counts = summarise(events)
        return {
            **row,
            "status": status,
            "reason": reason,
            "message": message,
            "counts": counts,
            "events": events,
        }

    async def prune(self, retention_hours: int) -> int:
        """Delete commands and outcomes older than the retention; returns the commands deleted."""
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                "DELETE FROM gateway_command_events WHERE recorded_at < now() - make_interval(hours => %(h)s)",
                {"h": retention_hours},
            )
            await cur.execute(
                "DELETE FROM gateway_commands WHERE created_at < now() - make_interval(hours => %(h)s)",
                {"h": retention_hours},
            )
            return cur.rowcount
