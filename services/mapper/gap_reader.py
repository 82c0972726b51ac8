"""Re-reading input that faust skipped: a group-less consumer reads a range of one input partition."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from services.common.kafka import (
    new_consumer,
)
from services.common.settings import KafkaSettings


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One consumed input message, from faust's stream or from the gap reader."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @classmethod
    def of(cls, message: Any) -> RawMessage:
        return cls(message.topic, message.partition, message.offset, message.key, message.value)


class GapReader(Service):
    """Reads a range of one input partition with its own group-less aiokafka consumer.

    Used only when the mapper finds input that faust skipped: it never touches faust's fetcher
    (whose drop logic can discard re-fetched messages after a seek) nor the group's offsets.
    Started on first use. `read` raises on a broker problem; the caller retries later.
    """

    def __init__(self, kafka: KafkaSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kafka = kafka
        self.consumer: AIOKafkaConsumer | None = None

    async def _consumer(self) -> AIOKafkaConsumer:
        if self.consumer is None:
            consumer = new_consumer(
                self.kafka, group_id=None, client_id=f"{self.kafka.client_id}-mapper-gaps"
            )
            await consumer.start()
            self.consumer = consumer
        return self.consumer

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    async def earliest(self, topic: str, partition: int) -> int:
        consumer = await self._consumer()
        tp = TopicPartition(topic, partition)
        offsets = await consumer.beginning_offsets([tp])
        return int(offsets[tp])

    async def read(
        self, topic: str, partition: int, start: int, until: int, timeout_s: float = 30.0
    ) -> list[RawMessage]:
        """Messages with `start <= offset < until`, in order (offsets that hold no message, such
        as transaction markers, are simply absent)."""
        consumer = await self._consumer()
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        found: list[RawMessage] = []
        deadline = time.monotonic() + timeout_s
        while await consumer.position(tp) < until:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}[{partition}] {start}..{until - 1} not read in {timeout_s} s")
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=2000)
            found.extend(
                RawMessage(topic, partition, r.offset, r.key, r.value)
                for r in batch.get(tp, [])
                if r.offset < until
            )
        return found
