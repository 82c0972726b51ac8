"""The mapper's outputs as Kafka messages, and the producer that sends them in record batches.

Outputs and changelog records go out in per-partition record batches, every delivery awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.partitioner import DefaultPartitioner
from mode import Service

from schemas.topics import DEADLETTER, DLQ_STAGE
from services.common.kafka import (
    CONTENT_TYPE_HEADER,
    deadletter_headers,
    new_producer,
)
from services.common.metrics import (
    DEADLETTERED,
    EVENTS_PRODUCED,
)
from services.common.poison import failure_of
from services.common.settings import KafkaSettings
from services.mapper.messages import DeadLetter, Emit, Incoming, Output
from services.mapper.settings import MapperSettings

log = logging.getLogger(__name__)

_PARTITION_CACHE_MAX = 100_000
_YIELD_EVERY_MESSAGES = 1000


@dataclass(frozen=True)
class OutMessage:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    partition: int | None = None
    """None: Kafka's default partitioner over the key (every wire topic); set for changelog records."""


class OutputProducer(Service):
    """Produces the mapper's outputs with its own idempotent aiokafka producer, in record batches.

    `produce_all` appends each message to a batch per (topic, partition) - the partition chosen
    by Kafka's default partitioner, as for any keyed send - sends the batches without awaiting
    each, then awaits every delivery; it returns only when all messages are durably written
    (`acks=all`) and raises if any failed, so the caller never acknowledges unsent work.
    Batching avoids aiokafka's per-message future and task overhead (aiokafka#528).
    """

    def __init__(self, kafka: KafkaSettings, settings: MapperSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kafka = kafka
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None
        self.producer_started = asyncio.Event()
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._by_key: dict[tuple[str, bytes], int] = {}
        """(topic, key) -> partition: murmur2 in pure Python is costly and a client's records share a key."""

    async def on_start(self) -> None:
        self.producer = new_producer(self.kafka, client_id=f"{self.kafka.client_id}-mapper-out")
        await self.producer.start()
        self.producer_started.set()

    async def on_stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()  # flushes what is still buffered

    async def reset(self) -> None:
        """Replace the producer by a new one (a new idempotent producer id), when nothing is in
        flight. After Kafka refused one of its record batches, an idempotent producer's sequence
        numbers for that partition no longer match the broker's, and every later send there fails
        with `OutOfOrderSequenceNumber`; a new producer starts its sequences afresh."""
        fresh = new_producer(self.kafka, client_id=f"{self.kafka.client_id}-mapper-out")
        try:
            await fresh.start()
        except Exception:  # the broker is away: keep the old one, the next refusal tries again
            log.warning("cannot start a new producer", exc_info=True)
            with contextlib.suppress(Exception):
                await fresh.stop()
            return
        old, self.producer = self.producer, fresh
        self.producer_started.set()
        if old is not None:
            with contextlib.suppress(Exception):
                await old.stop()

    async def _partition_of(self, topic: str, key: bytes | None) -> int:
        assert self.producer is not None
        partitions = self._partitions.get(topic)
        if partitions is None:
            found = await self.producer.partitions_for(topic)
            partitions = self._partitions[topic] = sorted(found)
        partition: int = self._partitioner(key, partitions, partitions)
        if key is not None:  # keyed: always the same partition (a None key is spread at random)
            if len(self._by_key) >= _PARTITION_CACHE_MAX:
                self._by_key.clear()
            self._by_key[(topic, key)] = partition
        return partition

    async def produce_all(self, messages: list[OutMessage]) -> dict[tuple[str, int], int]:
        """Returns, per (topic, partition) written, the offset after its last record."""
        await self.producer_started.wait()
        producer = self.producer
        assert producer is not None
        batches: dict[tuple[str, int], Any] = {}
        deliveries: list[tuple[Awaitable[Any], int]] = []
        """Each delivery future with the number of records it carries."""
        by_key = self._by_key
        for count, message in enumerate(messages, 1):
            if count % _YIELD_EVERY_MESSAGES == 0:  # a big batch (a large select) leaves the loop turns
                await asyncio.sleep(0)
            partition = message.partition
            if partition is None and message.key is not None:
                partition = by_key.get((message.topic, message.key))
            if partition is None:
                partition = await self._partition_of(message.topic, message.key)
            where = (message.topic, partition)
            batch = batches.get(where)
            if batch is None:
                batch = batches[where] = producer.create_batch()
            if (
                batch.append(key=message.key, value=message.value, timestamp=None, headers=message.headers)
                is None
            ):
                deliveries.append(
                    (await producer.send_batch(batch, where[0], partition=where[1]), batch.record_count())
                )
                batch = batches[where] = producer.create_batch()
                appended = batch.append(
                    key=message.key, value=message.value, timestamp=None, headers=message.headers
                )
                if appended is None:  # larger than a whole batch: send it on its own
                    single = await producer.send(
                        message.topic,
                        message.value,
                        key=message.key,
                        partition=where[1],
                        headers=message.headers,
                    )
                    deliveries.append((single, 1))
                    batches.pop(where)
        for (topic, partition), batch in batches.items():
            if batch.record_count():
                deliveries.append(
                    (await producer.send_batch(batch, topic, partition=partition), batch.record_count())
                )
        results = await asyncio.gather(*(delivery for delivery, _ in deliveries))
        ends: dict[tuple[str, int], int] = {}
        for metadata, (_, count) in zip(results, deliveries, strict=True):
            if metadata is not None and metadata.offset is not None:
                where = (metadata.topic, metadata.partition)
                ends[where] = max(ends.get(where, 0), metadata.offset + count)
        return ends


def too_large_error(error: BaseException) -> bool:
    """Kafka refused a record for its size (over a topic's `max.message.bytes` or the producer's
    request limit): permanent, and caused by the content of the message that produced it."""
    return isinstance(error, MessageSizeTooLargeError | RecordTooLargeError | RecordListTooLargeError)


def transient_produce_error(error: BaseException) -> bool:
    """A produce error worth retrying: Kafka says so, or the broker did not answer in time, or the
    idempotent producer lost its sequence (retried with a new producer)."""
    return isinstance(error, KafkaTimeoutError | OSError | TimeoutError | OutOfOrderSequenceNumber) or bool(
        getattr(error, "retriable", False)
    )


def needs_new_producer(error: BaseException) -> bool:
    """The producer's sequence numbers cannot be trusted any more (see `OutputProducer.reset`)."""
    return too_large_error(error) or isinstance(error, OutOfOrderSequenceNumber)


SERVICE = "mapper"
STAGE_INTERNAL = "mapper.internal"
_HEADERS = [CONTENT_TYPE_HEADER]  # shared by every Emit's message (aiokafka only reads it)


@functools.cache
def _produced(topic: str, message_type: str) -> Any:
    return EVENTS_PRODUCED.labels(SERVICE, topic, message_type)


def internal_error_letter(incoming: Incoming, error: Exception) -> DeadLetter:
    """The dead letter of a message whose handling raised (`services.common.poison`)."""
    failure = failure_of(error)
    return DeadLetter(
        key=incoming.key,
        value=incoming.value,
        headers=deadletter_headers(
            reason=failure.reason,
            error=failure.error,
            stage=STAGE_INTERNAL,
            topic=incoming.real_topic,
            partition=incoming.partition,
            offset=incoming.offset,
            error_class=failure.error_class,
        ),
        reason=failure.reason,
    )


def kafka_message(output: Output, settings: MapperSettings) -> OutMessage:
    """The Kafka message for one output (topic name with the configured prefix); counts it."""
    if isinstance(output, Emit):
        _produced(output.topic, output.type).inc()
        return OutMessage(settings.topic(output.topic), output.key, output.value, _HEADERS)
    stage = dict(output.headers).get(DLQ_STAGE, b"").decode()
    DEADLETTERED.labels(SERVICE, stage, output.reason).inc()
    _produced(DEADLETTER, "deadletter").inc()
    log.warning("dead-lettered message", extra={"reason": output.reason, "stage": stage})
    return OutMessage(settings.topic(DEADLETTER), output.key, output.value, output.headers)
