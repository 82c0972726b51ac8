"""The mapper's state changelog on Kafka: its topic, its record keys, and recovery from it.

The changelog (`<app_id>-state-changelog`, compacted, one partition per source partition) holds
every state change the mapper made: key = the state key as a JSON string, value = the raw state
bytes (None: deleted). The mapper writes it itself with its output producer (services.mapper.app);
this module reads it back.

`ChangelogRecovery.recover(partition)` brings the local store (services.mapper.state_store) up to
the end of one changelog partition: it reads only the records at or after the store's checkpoint
for that partition (all of them for `memory://`, which keeps no checkpoint), applies them in
chunks, each chunk together with its new checkpoint, and returns how many it read. A checkpoint
beyond the partition's end means the local store belongs to another changelog (the topic was
recreated): `StaleLocalState` is raised and the caller clears the store and recovers again.
It uses its own group-less aiokafka consumer (public API: assign, seek, getmany); a broker
problem raises, the caller retries later. Idempotent: applying the same records again leaves
the same state.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from schemas.topics import TopicSpec
from services.common.kafka import new_consumer
from services.common.metrics import MAPPER_STATE_RECOVERED, MAPPER_STATE_RECOVERY_FROM
from services.common.settings import KafkaSettings
from services.mapper.state_store import StateBackend

log = logging.getLogger(__name__)

CHUNK_RECORDS = 5_000
"""Records applied (and checkpointed) together during recovery."""
READ_TIMEOUT_S = 120.0


def changelog_topic(app_id: str) -> str:
    return f"{app_id}-state-changelog"


def changelog_spec(app_id: str, partitions: int) -> TopicSpec:
    """The changelog's topic: compacted (the newest value per key is all recovery needs)."""
    return TopicSpec(
        name=changelog_topic(app_id),
        description="The mapper's state changes (services.mapper.changelog)",
        message_types=(),
        partitions=partitions,
        config={"cleanup.policy": "compact"},
    )


def encode_key(key: str) -> bytes:
    """A state key as written to the changelog (a JSON string, as faust's table wrote it)."""
    return orjson.dumps(key)


def decode_key(raw: bytes | None) -> str | None:
    """The state key of a changelog record, None when it is not a JSON string."""
    if raw is None:
        return None
    try:
        key = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return key if isinstance(key, str) else None


class StaleLocalState(Exception):
    """The local store's checkpoint lies beyond the changelog's end: it is not this changelog's."""


class ChangelogRecovery(Service):
    """Reads changelog partitions into a `StateBackend` (see the module docstring)."""

    def __init__(self, kafka: KafkaSettings, topic: str, backend: StateBackend, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kafka = kafka
        self.topic = topic
        self.backend = backend
        self.consumer: AIOKafkaConsumer | None = None

    async def _consumer(self) -> AIOKafkaConsumer:
        if self.consumer is None:
            consumer = new_consumer(
                self.kafka, group_id=None, client_id=f"{self.kafka.client_id}-mapper-recovery"
            )
            await consumer.start()
            self.consumer = consumer
        return self.consumer

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    async def recover(self, partition: int) -> int:
        """Apply the changelog records of `partition` after the local checkpoint; returns their count."""
        consumer = await self._consumer()
        tp = TopicPartition(self.topic, partition)
        earliest = int((await consumer.beginning_offsets([tp]))[tp])
        end = int((await consumer.end_offsets([tp]))[tp])
        checkpoint = self.backend.checkpoint(partition)
        if checkpoint is not None and checkpoint > end:
            raise StaleLocalState(
                f"{self.topic}[{partition}]: local checkpoint {checkpoint} is beyond the end {end}"
            )
        start = earliest if checkpoint is None else max(checkpoint, earliest)
        MAPPER_STATE_RECOVERY_FROM.labels(str(partition)).set(start)
        started = time.perf_counter()
        read = 0
        if start < end:
            consumer.assign([tp])
            consumer.seek(tp, start)
            deadline = time.monotonic() + READ_TIMEOUT_S
            while await consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self.topic}[{partition}] not read up to {end} in {READ_TIMEOUT_S} s"
                    )
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=CHUNK_RECORDS)
                records = [r for r in batch.get(tp, []) if r.offset < end]
                if not records:
                    continue
                deadline = time.monotonic() + READ_TIMEOUT_S
                changes: dict[str, bytes | None] = {}
                for record in records:
                    key = decode_key(record.key)
                    if key is None:
                        log.warning(
                            "changelog record without a string key skipped",
                            extra={"partition": partition, "offset": record.offset},
                        )
                        continue
                    changes[key] = record.value
                read += len(records)
                self.backend.write(changes, {partition: records[-1].offset + 1})
        self.backend.write({}, {partition: end})
        MAPPER_STATE_RECOVERED.labels(str(partition)).inc(read)
        log.info(
            "state partition recovered",
            extra={
                "partition": partition,
                "from_offset": start,
                "end_offset": end,
                "records": read,
                "ms": round((time.perf_counter() - started) * 1000),
            },
        )
        return read
