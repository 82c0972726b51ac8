"""An in-memory `WriterStore` (services/writer/store_port.py) for fast tests of the writer's
orchestration. It keeps the port's contract (tests/unit/writer/writer_store_contract.py, run against
it and against `AsyncPostgresStore`) for contract records; other event types are recorded as applied
and change nothing. Contract rows follow the Python reference rules (`merge_contract`)."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from schemas.records import ContractRecordRetired
from services.writer.apply import STAGE_COLUMNS, ContractRow, StagedRecord, StoredContract, merge_contract
from services.writer.handlers import (
    BatchPlan,
    BatchResult,
    OutboxMessage,
    OutboxTopics,
    counts_for,
    dead_letters_of,
    events_for,
    outbox_messages,
)
from services.writer.store import StoreRejected, StoreUnavailable


def _row(record: StagedRecord) -> ContractRow:
    values: dict[str, Any] = dict(zip(STAGE_COLUMNS, record.values, strict=True))
    values["explanation"] = json.loads(values["explanation"])
    return ContractRow(**values, correlation_id=record.correlationid)


@dataclass
class _State:
    processed: set[UUID] = field(default_factory=set)
    contracts: dict[str, StoredContract] = field(default_factory=dict)
    outbox: list[OutboxMessage] = field(default_factory=list)


class InMemoryWriterStore:
    """`WriterStore` in memory. `unavailable` makes the next calls raise `StoreUnavailable` (one per
    item); like PostgreSQL, a record whose text contains a NUL character is refused (`StoreRejected`)."""

    def __init__(self) -> None:
        self.state = _State()
        self.unavailable = 0
        self.applied_plans: list[BatchPlan] = []

    def _reachable(self) -> None:
        if self.unavailable:
            self.unavailable -= 1
            raise StoreUnavailable("connection refused (fake)")

    async def apply(self, plan: BatchPlan, outbox: OutboxTopics | None = None) -> BatchResult:
        self._reachable()
        state = copy.deepcopy(self.state)  # the transaction: committed only when everything applied
        result = BatchResult()
        now = datetime.now(UTC)
        for applicable in plan.events:
            event = applicable.event
            if event.id in state.processed:
                result.duplicates += 1
                continue
            state.processed.add(event.id)
            result.fresh += 1
            if isinstance(event, StagedRecord):
                row = _row(event)
                if any("\x00" in v for v in (row.name, row.description or "", row.contract_type)):
                    raise StoreRejected("CharacterNotInRepertoire: invalid byte sequence 0x00 (fake)")
                outcome, values = merge_contract(state.contracts.get(row.contract_key), row)
                if outcome != "unchanged":
                    state.contracts[row.contract_key] = StoredContract(
                        contract_key=row.contract_key,
                        tenant_id=row.tenant_id,
                        client_id=row.client_id,
                        psa_synced=True,
                        psa_last_updated=row.psa_last_updated,
                        values=values,
                        local_overrides=values["local_overrides"],
                        removed_in_psa_at=values["removed_in_psa_at"],
                    )
                counts = counts_for(result, row.tenant_id, row.client_id, row.correlation_id)
                setattr(counts, outcome, getattr(counts, outcome) + 1)
                result.last_synced_at[(row.tenant_id, row.client_id)] = now
            elif isinstance(event, ContractRecordRetired):
                data = event.data
                stored = state.contracts.get(data.contract_key)
                counts = counts_for(result, data.tenant_id, data.client_id, event.correlationid)
                if stored is not None and stored.removed_in_psa_at is None:
                    values = {**stored.values, "removed_in_psa_at": data.observed_at}
                    state.contracts[data.contract_key] = StoredContract(
                        **{**stored.__dict__, "values": values, "removed_in_psa_at": data.observed_at}
                    )
                    counts.retired += 1
                else:
                    counts.unchanged += 1
                result.last_synced_at[(data.tenant_id, data.client_id)] = now
        done = set(plan.outbox_done)
        state.outbox = [m for m in state.outbox if m.id not in done]
        if outbox is not None:
            result.dead_letters = (
                dead_letters_of(plan, result) if result.rejected_events else list(plan.dead_letters)
            )
            result.outbox = outbox_messages(
                result.dead_letters, events_for(result, result.dead_letters), outbox
            )
            state.outbox.extend(result.outbox)
        self.state = state
        self.applied_plans.append(plan)
        return result

    async def read_outbox(self, topics: Sequence[str]) -> list[OutboxMessage]:
        self._reachable()
        return [m for m in self.state.outbox if m.topic in topics]

    async def delete_outbox(self, ids: Sequence[UUID]) -> int:
        self._reachable()
        wanted = set(ids)
        before = len(self.state.outbox)
        self.state.outbox = [m for m in self.state.outbox if m.id not in wanted]
        return before - len(self.state.outbox)

    async def prune_processed(self, retention_days: int) -> int:
        self._reachable()
        return 0

    async def ping(self) -> bool:
        return not self.unavailable

    async def close(self) -> None:
        return None
