"""Server-Sent Events of `sync.events.v1`, filtered to one tenant (and, for a client-scoped token,
its clients).

Each connection reads the topic with its own group-less consumer, so streams never share state:
- an event is sent only when its Kafka key starts with `{tenant}:` **and** its `tenantid` is the
  tenant (and its client is in scope): another tenant's event is never written to the stream;
- every sent event's SSE `id` is the stream position (`p-offset` per partition, `.`-joined) just
  after it; a reconnect with `Last-Event-ID` resumes exactly there (events still in retention),
  without one the stream starts at the end of the topic;
- the event's `data` is the CloudEvent as published (JSON, one line), `event` is its type;
- a comment line is sent every `heartbeat_s` while nothing else is.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

_POSITION_RE = re.compile(r"^\d{1,5}-\d{1,19}$")


def parse_last_event_id(value: str | None) -> dict[int, int] | None:
    """`{partition: next offset}` from a `Last-Event-ID`, None when absent or not ours (pure)."""
    if not value:
        return None
    positions: dict[int, int] = {}
    for part in value.strip().split(".")[:1000]:
        if not _POSITION_RE.match(part):
            return None
        partition, offset = part.split("-")
        positions[int(partition)] = int(offset)
    return positions or None


def format_position(positions: dict[int, int]) -> str:
    return ".".join(f"{p}-{o}" for p, o in sorted(positions.items()))


@dataclass(frozen=True)
class StreamFilter:
    tenant_id: str
    clients: frozenset[str] | None = None

    def accepts(self, key: bytes | None, value: bytes | None) -> tuple[str, bytes] | None:
        """`(type, CloudEvent JSON line)` when the record is this tenant's event, else None (pure)."""
        if not value or not key or not key.startswith(f"{self.tenant_id}:".encode()):
            return None
        try:
            event = orjson.loads(value)
        except ValueError:
            return None
        if not isinstance(event, dict) or event.get("tenantid") != self.tenant_id:
            return None
        if self.clients is not None:
            data = event.get("data")
            client = data.get("client_id") if isinstance(data, dict) else None
            if client != "*" and client not in self.clients:
                return None
        line = value if b"\n" not in value and b"\r" not in value else orjson.dumps(event)
        return str(event.get("type", "message"))[:100], line


async def sse_events(
    consumer: AIOKafkaConsumer,
    topic: str,
    selector: StreamFilter,
    resume: dict[int, int] | None,
    heartbeat_s: float,
    disconnected: Callable[[], object],
    partitions_ready_timeout_s: float = 30.0,
) -> AsyncIterator[bytes]:
    """The SSE byte chunks of one connection; the caller started `consumer` (group-less) and stops it."""
    partitions = await _assign(consumer, topic, partitions_ready_timeout_s)
    positions: dict[int, int] = {}
    ends = await consumer.end_offsets(partitions)
    for tp in partitions:
        start = (resume or {}).get(tp.partition)
        if start is None:
            start = ends[tp] if resume is None else 0
        consumer.seek(tp, start)
        positions[tp.partition] = start
    yield b"retry: 2000\n: connected\n\n"
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    while True:
        result = disconnected()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        batch = await consumer.getmany(timeout_ms=min(1000, int(heartbeat_s * 1000)), max_records=500)
        chunks: list[bytes] = []
        for tp, records in sorted(batch.items(), key=lambda item: item[0].partition):
            for record in records:
                positions[tp.partition] = record.offset + 1
                accepted = selector.accepts(record.key, record.value)
                if accepted is None:
                    continue
                event_type, line = accepted
                chunks.append(
                    b"id: " + format_position(positions).encode() + b"\nevent: " + event_type.encode()
                    + b"\ndata: " + line + b"\n\n"
                )  # fmt: skip
        if chunks:
            yield b"".join(chunks)
            last_sent = loop.time()
        elif loop.time() - last_sent >= heartbeat_s:
            yield b": heartbeat\n\n"
            last_sent = loop.time()


async def _assign(consumer: AIOKafkaConsumer, topic: str, timeout_s: float) -> list[TopicPartition]:
    consumer.subscribe([topic])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not consumer.assignment():
        if loop.time() > deadline:
            raise TimeoutError(f"no partitions of {topic} assigned within {timeout_s:.0f} s")
        await consumer.getmany(timeout_ms=100, max_records=1)  # drives the assignment; nothing is fetched yet
    return sorted(consumer.assignment(), key=lambda tp: tp.partition)


def selector_for(tenant_id: str, clients: Collection[str] | None) -> StreamFilter:
    return StreamFilter(tenant_id, frozenset(clients) if clients is not None else None)
