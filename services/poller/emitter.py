"""Sends one run's events and records in the store only what Kafka acknowledged (`Emitter`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from schemas.envelope import CloudEvent
from schemas.topics import PSA_AGREEMENTS, SYNC_EVENTS
from services.common.metrics import EVENTS_PRODUCED
from services.poller.changes import KnownAgreement
from services.poller.publisher import Publisher
from services.poller.store import PollerStore


class Emitter:
    """Sends events and records what Kafka acknowledged.

    `observed`/`removed` queue an event and the state change it implies; `flush` waits for every
    queued acknowledgement and only then writes the snapshot digests (one transaction) and drops
    removed agreements. A failed acknowledgement raises from `flush` and records nothing of that batch.
    Flushes happen every `batch_size` events or `flush_interval` seconds, which bounds the tail a
    crash can re-emit (events sent but not yet recorded).
    """

    def __init__(
        self,
        publisher: Publisher,
        store: PollerStore,
        tenant_id: str,
        batch_size: int = 200,
        flush_interval: float = 0.5,
        *,
        psa_topic: str = PSA_AGREEMENTS,
        events_topic: str = SYNC_EVENTS,
    ) -> None:
        self._psa_topic = psa_topic
        self._events_topic = events_topic
        self._publisher = publisher
        self._store = store
        self._tenant_id = tenant_id
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._last_flush = time.monotonic()
        self._pending: list[Awaitable[Any]] = []
        self._records: list[KnownAgreement] = []
        self._forget: list[int] = []
        self._lock = asyncio.Lock()
        self.sent = 0

    async def _send(self, topic: str, event: CloudEvent) -> None:
        self._pending.append(await self._publisher.send(topic, event))
        self.sent += 1
        EVENTS_PRODUCED.labels("poller", topic, event.type).inc()

    async def observed(self, event: CloudEvent, record: KnownAgreement) -> None:
        await self._send(self._psa_topic, event)
        self._records.append(record)
        if (
            len(self._pending) >= self._batch_size
            or time.monotonic() - self._last_flush >= self._flush_interval
        ):
            await self.flush()

    async def removed(self, event: CloudEvent, *, forget_agreement: int | None = None) -> None:
        await self._send(self._psa_topic, event)
        if forget_agreement is not None:
            self._forget.append(forget_agreement)

    async def sync_event(self, event: CloudEvent) -> None:
        await self._send(self._events_topic, event)

    async def flush(self) -> None:
        async with self._lock:
            self._last_flush = time.monotonic()
            pending, self._pending = self._pending, []
            records, self._records = self._records, []
            forget, self._forget = self._forget, []
            if pending:
                await asyncio.gather(*pending)
            if records:
                await self._store.save_snapshots(self._tenant_id, records)
            if forget:
                await self._store.forget_agreements(self._tenant_id, forget)
