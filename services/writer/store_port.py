"""The writer's store port: what `Writer` (services/writer/consumer.py) needs from its database.

`AsyncPostgresStore` is the production adapter; the unit tests use an in-memory fake, and one contract
suite (tests/unit/writer/writer_store_contract.py) runs against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from uuid import UUID

from services.writer.handlers import BatchPlan, BatchResult, OutboxMessage, OutboxTopics


class WriterStore(Protocol):
    """The writer's unit of work. One call at a time (not for concurrent use).

    - `apply` applies a plan in one transaction, all or nothing: events whose ids were applied
      before are skipped (counted as duplicates); `plan.outbox_done` rows are deleted; with
      `outbox`, the batch's dead letters and sync events are written to the outbox in the same
      transaction and returned in `result.outbox`. Raises `StoreUnavailable` when the database
      cannot be reached (retry the same plan) and `StoreRejected` when it refuses the data (nothing
      of the plan is applied; split the plan to find the event).
    - `read_outbox` returns the outbox messages of `topics`, oldest first; `delete_outbox` forgets
      published ones and returns how many it deleted (idempotent).
    """

    async def apply(self, plan: BatchPlan, outbox: OutboxTopics | None = None) -> BatchResult: ...

    async def read_outbox(self, topics: Sequence[str]) -> list[OutboxMessage]: ...

    async def delete_outbox(self, ids: Sequence[UUID]) -> int: ...

    async def prune_processed(self, retention_days: int) -> int: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
