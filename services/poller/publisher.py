"""Kafka adapter of the poller: send events without waiting, and learn when each is acknowledged.

`send` hands an event to the idempotent, `acks=all` producer and returns an awaitable that
completes when the broker acknowledged it (or raises). The poller awaits these before it records a
snapshot or advances a watermark, so nothing is recorded as emitted that Kafka does not hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from schemas.envelope import CloudEvent
from services.common.kafka import CONTENT_TYPE_HEADER


class Publisher(Protocol):
    """Where events go (port)."""

    async def send(self, topic: str, event: CloudEvent) -> Awaitable[Any]:
        """Queue `event`; the returned awaitable completes once the broker acknowledged it."""
        ...


class KafkaPublisher:
    """`Publisher` on an aiokafka producer built by `services.common.kafka.new_producer`."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def send(self, topic: str, event: CloudEvent) -> Awaitable[Any]:
        future: asyncio.Future[Any] = await self._producer.send(
            topic, event.to_bytes(), key=event.key, headers=[CONTENT_TYPE_HEADER]
        )
        return future
