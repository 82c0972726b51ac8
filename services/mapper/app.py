"""The mapper's faust app: one agent over `psa.agreements.v1` + `sync.commands.v1`, one state table.

Thin adapter around `services.mapper.state.decide`:
- Both source topics are read as raw bytes (`value_serializer="raw"`) and parsed with
  `schemas.topics.parse` inside `decide`; faust never defines a second schema.
- State lives in one faust Table (`<app_id>-state-changelog`), keys prefixed by the client key.
  Each change is written to the changelog partition of the message being handled; as every
  message about a client is keyed `{tenant}:{client}` and all topics are co-partitioned, a
  client's state sits in the changelog partition of that client's messages and moves with it on
  a rebalance; faust recovers it on start. The changelog therefore has as many partitions as the
  source topics (`MapperSettings.partitions`, auto-detected by the CLI).
- Delivery: at-least-once (faust's exactly_once is unreliable). Messages are handled in batches
  (`stream.take_events`); the batch's outputs are produced (per-partition record batches of a
  dedicated idempotent producer, `OutputProducer`) and awaited first, then its state changes and
  input positions (changelog records), and only then is the batch acknowledged: no offset commits
  ahead of its effects, and no state ever claims records that were not written.
- Input positions (`services.mapper.positions`): the state table holds, per source partition, the
  next offset the state reflects. Duplicates below it are skipped; a message beyond it means
  faust skipped input (its fetcher can drop messages around recovery and seeks), so the partition
  is sought back and the missing messages are read again. Nothing is decided before the table is
  recovered.
- The worker keeps running on bad input: `decide` dead-letters it. An unexpected exception while
  handling one message dead-letters that message (`internal_error`) and the batch goes on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from mode import Service

from schemas.topics import DEADLETTER, DLQ_STAGE, PSA_AGREEMENTS, SYNC_COMMANDS
from services.common.health import HealthServer
from services.common.kafka import CONTENT_TYPE_HEADER, deadletter_headers, describe_error, new_producer
from services.common.metrics import DEADLETTERED, EVENTS_CONSUMED, EVENTS_PRODUCED
from services.common.settings import KafkaSettings, ObservabilitySettings
from services.mapper.positions import Verdict, classify, decode_position, encode_position, position_key
from services.mapper.settings import MapperSettings
from services.mapper.state import DeadLetter, Decision, Emit, Incoming, Output, decide

log = logging.getLogger(__name__)

SERVICE = "mapper"
STAGE_INTERNAL = "mapper.internal"
_PARTITION_CACHE_MAX = 100_000
SEEK_DEADLINE_S = 10.0
POSITION_CHECK_S = 2.0
"""How often the input positions are compared with what the consumer group acknowledged."""
"""A seek back that has not delivered the expected offset within this time is made again."""
_HEADERS = [CONTENT_TYPE_HEADER]  # shared by every Emit's message (aiokafka only reads it)
_RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


def _credentials(kafka: KafkaSettings) -> Any:
    if kafka.security_protocol == "PLAINTEXT":
        return None
    ssl_context = kafka.client_kwargs().get("ssl_context")
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism or "PLAIN",
            ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)


@dataclass(frozen=True)
class OutMessage:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    partition: int | None = None
    """None: Kafka's default partitioner over the key (every wire topic); set for changelog records."""


class StateStore(MutableMapping[str, bytes]):
    """The state table as `decide` sees it.

    Reads and writes go to the table's local store (what faust recovers from the changelog);
    every write also queues its changelog record - the key serialised as faust does, to the
    partition of the message being handled - which is produced together with the batch's
    outputs and awaited before the batch is acknowledged. So state changes are durable before
    their source offsets can commit, and they skip faust's one-message-at-a-time table buffer.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.changelog = table.changelog_topic
        self.changelog_name: str = table.changelog_topic.get_topic_name()
        self.partition = 0
        self.pending: list[OutMessage] = []

    def __getitem__(self, key: str) -> bytes:
        value: bytes = self.table.data[key]
        return value

    def __setitem__(self, key: str, value: bytes) -> None:
        self.table.data[key] = value
        self._log(key, value)

    def __delitem__(self, key: str) -> None:
        del self.table.data[key]
        self._log(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.table.data.keys()))

    def __len__(self) -> int:
        return len(self.table.data)

    def _log(self, key: str, value: bytes | None) -> None:
        key_bytes, _ = self.changelog.prepare_key(key, self.table.key_serializer)
        self.pending.append(OutMessage(self.changelog_name, key_bytes, value, [], self.partition))

    def position(self, topic: str, partition: int) -> int | None:
        """The next offset of `topic`/`partition` the state expects (`services.mapper.positions`)."""
        return decode_position(self.table.data.get(position_key(topic, partition)))

    def put_position(self, topic: str, partition: int, offset: int) -> None:
        """Record the next offset to handle; its changelog record goes to that partition."""
        key, value = position_key(topic, partition), encode_position(offset)
        self.table.data[key] = value
        key_bytes, _ = self.changelog.prepare_key(key, self.table.key_serializer)
        self.pending.append(OutMessage(self.changelog_name, key_bytes, value, [], partition))

    def take_pending(self) -> list[OutMessage]:
        pending, self.pending = self.pending, []
        return pending


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

    async def produce_all(self, messages: list[OutMessage]) -> None:
        await self.producer_started.wait()
        producer = self.producer
        assert producer is not None
        batches: dict[tuple[str, int], Any] = {}
        deliveries: list[Awaitable[Any]] = []
        by_key = self._by_key
        for message in messages:
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
                deliveries.append(await producer.send_batch(batch, where[0], partition=where[1]))
                batch = batches[where] = producer.create_batch()
                appended = batch.append(
                    key=message.key, value=message.value, timestamp=None, headers=message.headers
                )
                if appended is None:  # larger than a whole batch: send it on its own
                    deliveries.append(
                        await producer.send(
                            message.topic,
                            message.value,
                            key=message.key,
                            partition=where[1],
                            headers=message.headers,
                        )
                    )
                    batches.pop(where)
        for (topic, partition), batch in batches.items():
            if batch.record_count():
                deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*deliveries)


class MapperApp:
    """The faust app, its state table, topics and agent, built from settings (nothing at import)."""

    def __init__(
        self,
        settings: MapperSettings,
        kafka: KafkaSettings,
        observability: ObservabilitySettings | None = None,
        tenants: frozenset[str] | None = None,
    ) -> None:
        self.settings = settings
        self.observability = observability or ObservabilitySettings()
        self.tenants = tenants
        """Configured tenant ids (`services.common.tenants`); None = unknown-tenant checks off."""
        self._seeking: dict[tuple[str, int], tuple[int, float]] = {}
        """(topic, partition) -> (offset a seek back went to, deadline for it to deliver)."""
        self._held: list[Any] = []
        """Messages delivered before the state table was recovered, handled once it is."""
        self.ready = False
        self.app = faust.App(
            settings.app_id,
            broker=kafka.faust_broker,
            broker_credentials=_credentials(kafka),
            broker_client_id=f"{kafka.client_id}-mapper",
            store=settings.store,
            datadir=settings.datadir,
            autodiscover=False,
            web_enabled=False,
            topic_partitions=settings.partitions,
            topic_replication_factor=1,
            topic_disable_leader=True,
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=settings.commit_interval_s,
            producer_acks=-1,
            producer_linger_ms=5,
            producer_max_batch_size=256 * 1024,
            producer_max_request_size=8 * 1024 * 1024,
            consumer_max_fetch_size=8 * 1024 * 1024,
            table_standby_replicas=0,
        )
        self.table = self.app.Table(
            "state",
            key_type=str,  # -> json keys
            value_type=bytes,  # -> raw values, also when recovered from the changelog
            partitions=settings.partitions,
            help="Per-client mapper state: snapshots, linked items, auto-sync flag",
        )
        self.store = StateStore(self.table)
        self._input_topics = {settings.topic(PSA_AGREEMENTS), settings.topic(SYNC_COMMANDS)}
        self.inputs = self.app.topic(*sorted(self._input_topics), **_RAW)
        self.app.agent(self.inputs, name="mapper")(self._agent)
        self.app.timer(interval=POSITION_CHECK_S)(self._check_positions)
        health = HealthServer(
            SERVICE,
            self.observability.health_host,
            self.observability.health_port,
            {"worker": self.is_ready},
        )
        self.output = OutputProducer(kafka, self.settings)

        class Services(Service):
            async def on_start(self) -> None:
                await health.start()

            async def on_stop(self) -> None:
                await health.stop()

        self.app.service(Services)
        # faust starts instances too (App.on_init_extra_service takes a Service or its class)
        self.app.service(self.output)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------------

    async def _agent(self, stream: Any) -> AsyncIterator[None]:
        self.ready = True
        log.info("mapper agent started", extra={"app_id": self.settings.app_id})
        try:
            async for batch in stream.take_events(
                self.settings.batch_max, within=self.settings.batch_within_s
            ):
                await self._handle_batch(batch)
                yield None
        finally:
            self.ready = False

    async def _handle_batch(self, events: list[Any]) -> None:
        """Handle one batch in order; outputs are durable before the state that records them.

        Every message is first checked against the mapper's own position for its partition
        (`services.mapper.positions`): duplicates of handled messages are skipped, a message
        beyond the position means input was skipped upstream and the partition is sought back.
        Then the batch's outputs are produced and awaited, and only then its state changes and
        new positions (changelog records): a crash in between re-handles the batch (duplicate
        records, harmless), never leaves state that claims records which were not written.
        """
        outputs: list[Output] = []
        store = self.store
        if not self._recovered():
            # Never decide on a state that is not recovered yet: hold the messages (faust's
            # re-delivery after recovery may drop them) and handle them with the next batch.
            self._held.extend(event.message for event in events)
            return
        messages = [event.message for event in events]
        if self._held:
            owned = self.app.consumer.assignment()
            unique = {(m.topic, m.partition, m.offset): m for m in self._held if m.tp in owned}
            unique.update({(m.topic, m.partition, m.offset): m for m in messages})
            messages = [unique[k] for k in sorted(unique)]  # each partition in offset order
            self._held = []
        advanced: dict[tuple[str, int], int] = {}
        seeks: dict[Any, int] = {}
        for message in messages:
            where = (message.topic, message.partition)
            position = advanced.get(where)
            if position is None:
                position = store.position(*where)
            verdict = classify(position, message.offset, self._seek_pending(where, position))
            if verdict is Verdict.GAP and position is not None:
                position = await self._fill_gap_from(message, position)
                verdict = classify(position, message.offset, False)
                if verdict is Verdict.GAP:
                    seeks[message.tp] = position
                    self._seeking[where] = (position, time.monotonic() + SEEK_DEADLINE_S)
            if verdict is not Verdict.PROCESS:
                self._consumed(self.settings.canonical(message.topic), verdict.value).inc()
                continue
            self._seeking.pop(where, None)
            incoming = Incoming(
                topic=self.settings.canonical(message.topic),
                source_topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
                value=message.value if message.value is not None else b"",
            )
            store.partition = message.partition
            try:
                decision = decide(store, incoming, self.tenants)
            except Exception as error:  # a bug must not stop the worker: park the message
                log.exception(
                    "unexpected error handling a message",
                    extra={"topic": message.topic, "partition": message.partition, "offset": message.offset},
                )
                decision = Decision("error", [self._internal_error(incoming, error)])
            self._consumed(incoming.topic, decision.message_type).inc()
            outputs.extend(decision.outputs)
            advanced[where] = message.offset + 1
        for (topic, partition), position in advanced.items():
            store.put_position(topic, partition, position)
        if outputs:
            await self.output.produce_all([self._message(output) for output in outputs])
        state = store.take_pending()
        if state:
            await self.output.produce_all(state)
        if seeks:
            for tp, offset in seeks.items():
                log.warning(
                    "input skipped upstream: seeking back to the mapper's position",
                    extra={"topic": tp.topic, "partition": tp.partition, "offset": offset},
                )
            # on the consumer's own thread (faust runs aiokafka there), like faust's recovery
            await self.app.consumer.seek_wait(seeks)

    def _recovered(self) -> bool:
        recovery = getattr(self.app.tables, "recovery", None)
        return (
            recovery is not None
            and recovery.completed.is_set()
            and not getattr(self.app, "rebalancing", False)
        )

    async def _check_positions(self) -> None:
        """Periodic: seek a partition back to the state's position when the group acknowledged
        more than the state handled (committed offset beyond the position: no later message
        would reveal that gap), and repeat a seek back that has not delivered in time (faust's
        fetcher may have dropped the re-read messages too)."""
        if not self._recovered() or self._held:
            return
        consumer = self.app.consumer
        committed: dict[Any, int | None] = getattr(consumer, "_committed_offset", {})
        now = time.monotonic()
        seeks: dict[Any, int] = {}
        for tp in consumer.assignment():
            where = (tp.topic, tp.partition)
            if tp.topic not in self._input_topics:
                continue
            position = self.store.position(*where)
            pending = self._seeking.get(where)
            if pending is not None:
                if pending[1] <= now and pending[0] == position:
                    seeks[tp] = pending[0]
                continue
            acknowledged = committed.get(tp)
            if position is not None and acknowledged is not None and acknowledged > position:
                seeks[tp] = position
        if seeks:
            for tp, offset in seeks.items():
                log.warning(
                    "input acknowledged but not handled: seeking back to the mapper's position",
                    extra={"topic": tp.topic, "partition": tp.partition, "offset": offset},
                )
                self._seeking[(tp.topic, tp.partition)] = (offset, now + SEEK_DEADLINE_S)
            await consumer.seek_wait(seeks)

    def _seek_pending(self, where: tuple[str, int], position: int | None) -> bool:
        pending = self._seeking.get(where)
        return pending is not None and pending[0] == position and time.monotonic() < pending[1]

    async def _fill_gap_from(self, message: Any, position: int) -> int:
        """The position to re-read from: `position`, or the partition's earliest offset when
        retention already deleted the messages in between (logged as an error: they are lost)."""
        try:
            earliest = (await self.app.consumer.earliest_offsets(message.tp)).get(message.tp)
        except Exception:  # unknown: assume the messages still exist and seek back
            log.warning("cannot read the earliest offset", exc_info=True, extra={"topic": message.topic})
            return position
        if earliest is not None and earliest > position:
            log.error(
                "input deleted by retention before the mapper read it",
                extra={
                    "topic": message.topic,
                    "partition": message.partition,
                    "lost_from": position,
                    "lost_to": earliest - 1,
                },
            )
            return int(earliest)
        return position

    @staticmethod
    @functools.cache
    def _consumed(topic: str, message_type: str) -> Any:
        return EVENTS_CONSUMED.labels(SERVICE, topic, message_type)

    @staticmethod
    @functools.cache
    def _produced(topic: str, message_type: str) -> Any:
        return EVENTS_PRODUCED.labels(SERVICE, topic, message_type)

    def _internal_error(self, incoming: Incoming, error: Exception) -> DeadLetter:
        return DeadLetter(
            key=incoming.key,
            value=incoming.value,
            headers=deadletter_headers(
                reason="internal_error",
                error=describe_error(error),
                stage=STAGE_INTERNAL,
                topic=incoming.real_topic,
                partition=incoming.partition,
                offset=incoming.offset,
            ),
            reason="internal_error",
        )

    def _message(self, output: Output) -> OutMessage:
        """The Kafka message for one output (topic name with the configured prefix)."""
        if isinstance(output, Emit):
            self._produced(output.topic, output.type).inc()
            return OutMessage(self.settings.topic(output.topic), output.key, output.value, _HEADERS)
        stage = dict(output.headers).get(DLQ_STAGE, b"").decode()
        DEADLETTERED.labels(SERVICE, stage, output.reason).inc()
        self._produced(DEADLETTER, "deadletter").inc()
        log.warning("dead-lettered message", extra={"reason": output.reason, "stage": stage})
        return OutMessage(self.settings.topic(DEADLETTER), output.key, output.value, output.headers)

    # ------------------------------------------------------------------------------------------

    def worker(self, loglevel: str = "info") -> faust.Worker:
        """A faust Worker for this app. Its `execute_from_commandline()` owns and closes the loop."""
        return faust.Worker(
            self.app, loglevel=loglevel, quiet=True, redirect_stdouts=False, override_logging=False
        )

    def is_ready(self) -> bool:
        """Ready = the agent runs, no rebalance is in progress and the state table is recovered."""
        recovery = getattr(self.app.tables, "recovery", None)
        recovered = recovery is not None and recovery.completed.is_set()
        return self.ready and recovered and not getattr(self.app, "rebalancing", False)
