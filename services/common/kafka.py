"""Kafka adapters shared by the services (aiokafka), and the pure dead-letter rules.

- Producers are idempotent with `acks=all`: a send that returned was durably written once.
- Consumers never auto-commit: a service commits offsets only after its effects are durable.
- A message that cannot be parsed is never dropped: `dead_letter` sends its original bytes
  to `sync.deadletter.v1` with headers naming the reason, error, stage and source position.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from pydantic import ValidationError

from schemas.envelope import CLIENT_ID_PATTERN, TENANT_ID_PATTERN, CloudEvent
from schemas.topics import (
    DEADLETTER,
    DLQ_ERROR,
    DLQ_ERROR_CLASS,
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
    DLQ_STAGE,
    TOPICS,
    TopicSpec,
)
from services.common.logging import redact
from services.common.settings import KafkaSettings

log = logging.getLogger(__name__)

CONTENT_TYPE_HEADER = ("content-type", b"application/cloudevents+json")
_MAX_ERROR_CHARS = 2000


def new_producer(settings: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent, `acks=all` producer (not started)."""
    options: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_batch_size": 256 * 1024,
        "max_request_size": 8 * 1024 * 1024,
        "client_id": f"{settings.client_id}-producer",
    }
    options.update(settings.client_kwargs())
    options.update(overrides)
    return AIOKafkaProducer(**options)


def new_consumer(
    settings: KafkaSettings, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer with manual commits, reading from the earliest offset when the group is new (not started)."""
    options: dict[str, Any] = {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "client_id": f"{settings.client_id}-consumer",
        "max_partition_fetch_bytes": 8 * 1024 * 1024,
    }
    options.update(settings.client_kwargs())
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def publish(producer: AIOKafkaProducer, topic: str, event: CloudEvent) -> None:
    """Send one event keyed by its client and wait for the broker's acknowledgement."""
    await producer.send_and_wait(topic, event.to_bytes(), key=event.key, headers=[CONTENT_TYPE_HEADER])


def classify_parse_error(error: Exception) -> str:
    """A short reason code for a message that failed to parse (pure)."""
    if isinstance(error, ValidationError):
        for item in error.errors():
            if item["type"] == "json_invalid":
                return "malformed_json"
            if item["type"] in ("union_tag_invalid", "union_tag_not_found"):
                return "unknown_type"
        return "validation_error"
    if isinstance(error, UnicodeDecodeError | json.JSONDecodeError):
        return "malformed_json"
    return "validation_error"


def describe_error(error: Exception) -> str:
    """A bounded, credential-free, human-readable description of `error`."""
    if isinstance(error, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in error.errors()[:10]]
        text = "; ".join(parts)
    else:
        text = f"{type(error).__name__}: {error}"
    return redact(text)[:_MAX_ERROR_CHARS]


def deadletter_headers(
    *,
    reason: str,
    error: str,
    stage: str,
    topic: str,
    partition: int,
    offset: int,
    error_class: str | None = None,
) -> list[tuple[str, bytes]]:
    """The headers of a dead-letter record (pure); `error_class` (the exception's class name) adds
    `cs-dlq-error-class`."""
    headers = [
        (DLQ_REASON, reason.encode()),
        (DLQ_ERROR, redact(error)[:_MAX_ERROR_CHARS].encode()),
        (DLQ_STAGE, stage.encode()),
        (DLQ_SOURCE_TOPIC, topic.encode()),
        (DLQ_SOURCE_PARTITION, str(partition).encode()),
        (DLQ_SOURCE_OFFSET, str(offset).encode()),
    ]
    if error_class is not None:
        headers.append((DLQ_ERROR_CLASS, error_class[:200].encode()))
    return headers


async def dead_letter(
    producer: AIOKafkaProducer,
    *,
    value: bytes | None,
    key: bytes | None,
    reason: str,
    error: str,
    stage: str,
    topic: str,
    partition: int,
    offset: int,
    error_class: str | None = None,
) -> None:
    """Send the original bytes to `sync.deadletter.v1` and wait for the acknowledgement."""
    headers = deadletter_headers(
        reason=reason,
        error=error,
        stage=stage,
        topic=topic,
        partition=partition,
        offset=offset,
        error_class=error_class,
    )
    await producer.send_and_wait(DEADLETTER, value, key=key, headers=headers)
    log.warning(
        "dead-lettered message", extra={"reason": reason, "stage": stage, "topic": topic, "offset": offset}
    )


_TYPE_NAMES: frozenset[str] = frozenset(
    str(message_type.model_fields["type"].default) for topic in TOPICS for message_type in topic.message_types
)


def error_paths(error: Exception) -> list[str]:
    """The dotted paths of the fields a `ValidationError` names (`data.client_id`, `id`, ...), at most
    20, without the message-type tag a discriminated union puts first; `<root>` for the whole message
    (pure). Empty for any other error."""
    if not isinstance(error, ValidationError):
        return []
    paths: list[str] = []
    for item in error.errors():
        loc = list(item["loc"])
        if len(loc) > 1 and loc[0] in _TYPE_NAMES:
            loc = loc[1:]
        path = ".".join(str(part) for part in loc) or "<root>"
        if path not in paths:
            paths.append(path[:200])
        if len(paths) == 20:
            break
    return paths


def _first_match(pattern: str, *candidates: object) -> str | None:
    for candidate in candidates:
        if isinstance(candidate, str) and re.match(pattern, candidate):
            return candidate
    return None


def recover_addressee(raw: bytes | None) -> tuple[str, str | None, str | None, str | None] | None:
    """Best effort on a message that failed validation: `(tenant_id, client_id, id, type)` when the
    bytes are a JSON object naming a well-formed tenant, else None (pure). The tenant is the first
    well-formed one of `data.tenant_id`, `tenantid` and the subject's tenant; the client likewise of
    `data.client_id` and the subject's client, None when neither is well-formed.

    Used to address a rejection event to the producer of a bad command. Never raises, whatever the
    bytes (a value nested deeper than the parser's recursion, invalid UTF-8, `1e999999`: None).
    Duplicate keys: the last one wins, as in every parser of the project.
    """
    if not raw:
        return None
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(document, dict):
        return None
    data = document.get("data")
    data = data if isinstance(data, dict) else {}
    subject = document.get("subject")
    subject_tenant, subject_client = (
        subject.split(":", 1) if isinstance(subject, str) and ":" in subject else (None, None)
    )
    tenant = _first_match(TENANT_ID_PATTERN, data.get("tenant_id"), document.get("tenantid"), subject_tenant)
    if tenant is None:
        return None
    client = _first_match(CLIENT_ID_PATTERN, data.get("client_id"), subject_client)
    event_id = document.get("id")
    event_type = document.get("type")
    return (
        tenant,
        client,
        str(event_id)[:200] if event_id is not None else None,
        str(event_type)[:200] if event_type is not None else None,
    )


def recover_client(raw: bytes | None) -> tuple[str, str, str | None, str | None] | None:
    """`recover_addressee` when it finds a client too, else None (pure)."""
    recovered = recover_addressee(raw)
    if recovered is None:
        return None
    tenant, client, event_id, event_type = recovered
    return None if client is None else (tenant, client, event_id, event_type)


async def ensure_topics(
    settings: KafkaSettings, specs: Sequence[TopicSpec] = TOPICS, *, partitions: int | None = None
) -> list[str]:
    """Create every missing topic with its registry config, the settings' replication factor and
    `min.insync.replicas`; idempotent. Returns the names created."""
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=spec.name,
                num_partitions=partitions or spec.partitions,
                replication_factor=max(spec.replication_factor, settings.topic_replication_factor),
                topic_configs=settings.topic_config(dict(spec.config)),
            )
            for spec in specs
            if spec.name not in existing
        ]
        if not wanted:
            return []
        # created concurrently by another instance: the goal holds all the same
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(wanted)
        return [t.name for t in wanted]
    finally:
        await admin.close()


@dataclass(frozen=True)
class TopicDrift:
    """How an existing topic differs from what the registry and settings want."""

    topic: str
    partitions: tuple[int, int] | None = None  # (actual, wanted) when they differ
    replication_factor: tuple[int, int] | None = None  # (actual, wanted) when they differ
    config: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # key -> (actual, wanted)

    def describe(self) -> list[str]:
        lines = []
        if self.partitions:
            lines.append(f"partitions {self.partitions[0]} (wanted {self.partitions[1]})")
        if self.replication_factor:
            lines.append(
                f"replication factor {self.replication_factor[0]} (wanted {self.replication_factor[1]})"
            )
        lines += [
            f"{key}={actual} (wanted {wanted})" for key, (actual, wanted) in sorted(self.config.items())
        ]
        return lines


def topic_drift(
    topic: str,
    *,
    wanted_partitions: int,
    wanted_replication_factor: int,
    wanted_config: dict[str, str],
    actual_partitions: int,
    actual_replication_factor: int,
    actual_config: dict[str, str],
) -> TopicDrift:
    """Compare one topic with what is wanted (pure). More partitions than wanted is no drift."""
    return TopicDrift(
        topic,
        partitions=(actual_partitions, wanted_partitions) if actual_partitions < wanted_partitions else None,
        replication_factor=(actual_replication_factor, wanted_replication_factor)
        if actual_replication_factor != wanted_replication_factor
        else None,
        config={
            key: (actual_config.get(key), value)
            for key, value in wanted_config.items()
            if actual_config.get(key) != value
        },
    )


async def reconcile_topics(
    settings: KafkaSettings,
    specs: Sequence[TopicSpec] = TOPICS,
    *,
    partitions: int | None = None,
    apply_config: bool = True,
) -> tuple[list[str], list[TopicDrift]]:
    """Create missing topics (`ensure_topics`), then compare every topic with the registry and the
    settings: config drift is corrected (`alter_configs` with the wanted entries, when `apply_config`);
    a replication factor or partition count that differs is reported only (changing it needs a
    partition reassignment or adds partitions, which re-keys clients: an operator's decision).
    Returns (created, drift as found before correction)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    created = await ensure_topics(settings, specs, partitions=partitions)
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        names = [spec.name for spec in specs]
        described = {t["topic"]: t for t in await admin.describe_topics(names)}
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
        configs: dict[str, dict[str, str]] = {}
        for response in responses:
            for resource in response.to_object()["resources"]:
                configs[resource["resource_name"]] = {
                    entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]
                }
        drifts = []
        for spec in specs:
            topic = described.get(spec.name, {})
            found = topic.get("partitions") or []
            wanted_config = settings.topic_config(dict(spec.config))
            drift = topic_drift(
                spec.name,
                wanted_partitions=partitions or spec.partitions,
                wanted_replication_factor=max(spec.replication_factor, settings.topic_replication_factor),
                wanted_config=wanted_config,
                actual_partitions=len(found),
                actual_replication_factor=min((len(p["replicas"]) for p in found), default=0),
                actual_config=configs.get(spec.name, {}),
            )
            if drift.describe():
                drifts.append(drift)
            if drift.config and apply_config:
                # non-incremental AlterConfigs: send the whole wanted set so none of it is reset
                await admin.alter_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, spec.name, wanted_config)]
                )
        return created, drifts
    finally:
        await admin.close()


def topic_names(specs: Iterable[TopicSpec] = TOPICS) -> list[str]:
    return [spec.name for spec in specs]


async def wait_for_leaders(settings: KafkaSettings, names: Sequence[str], timeout_s: float = 60.0) -> None:
    """Return once every topic in `names` has all its partitions led in the broker's metadata.

    A faust worker that starts before its topic is visible ignores it until the next rebalance,
    so callers that just created topics wait here first. Raises `TimeoutError` with the topics
    still missing after `timeout_s`.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        leaders = await partition_leaders(settings)
        missing = [
            name
            for name in names
            if not leaders.get(name) or any(leader in (None, -1) for leader in leaders[name].values())
        ]
        if not missing:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topics not ready after {timeout_s:.0f} s: {missing}")
        await asyncio.sleep(0.2)


async def partition_leaders(settings: KafkaSettings) -> dict[str, dict[int, int | None]]:
    """Every topic the broker knows, with its partitions and their leader broker id (-1 or None:
    no leader), from the admin client's metadata (no topic is created by asking)."""
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return {
        str(topic["topic"]): {int(p["partition"]): p.get("leader") for p in topic.get("partitions", [])}
        for topic in described
        if topic.get("error_code", 0) == 0
    }


async def delete_matching(settings: KafkaSettings, matches: Callable[[str], bool]) -> list[str]:
    """Delete every topic whose name `matches`; returns the names deleted (best effort, idempotent)."""
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if matches(name)]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


async def read_until_end(
    consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition], *, max_records: int = 10_000
) -> AsyncIterator[ConsumerRecord[Any, Any]]:
    """Every record of `partitions` from the consumer's current positions up to the partitions' end
    offsets as of the call (seek first, e.g. `seek_to_beginning`, to read a topic whole). Records
    produced meanwhile may or may not be included; the iteration always ends."""
    end = await consumer.end_offsets(list(partitions))
    while [tp for tp, offset in end.items() if await consumer.position(tp) < offset]:
        batch = await consumer.getmany(timeout_ms=1000, max_records=max_records)
        for records in batch.values():
            for record in records:
                yield record
