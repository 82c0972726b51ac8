"""The mapper's faust app: one agent over `psa.agreements.v1` + `sync.commands.v1`, one state table.

Thin adapter around `services.mapper.state.decide`:
- Both source topics are read as raw bytes (`value_serializer="raw"`) and parsed with
  `schemas.topics.parse` inside `decide`; faust never defines a second schema.
- State lives in one faust Table (`<app_id>-state-changelog`), keys prefixed by the client key.
  faust writes each table change to the changelog partition of the message being handled; as
  every message about a client is keyed `{tenant}:{client}` and all topics are co-partitioned,
  a client's state sits in the changelog partition of that client's messages, and moves with it
  on a rebalance. The changelog must therefore have as many partitions as the source topics
  (`MapperSettings.partitions`, auto-detected by the CLI).
- Delivery: at-least-once (faust's exactly_once is unreliable). Messages are handled in batches
  (`stream.take_events`); outputs of a batch are produced without awaiting each delivery, then
  all deliveries are awaited before the batch is acknowledged, and faust flushes the producer
  before committing offsets. A crash replays at most the unacknowledged batches; the writer is
  idempotent, so duplicates are harmless.
- The worker keeps running on bad input: `decide` dead-letters it. An unexpected exception while
  handling one message dead-letters that message (`internal_error`) and the batch goes on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import faust
from faust.streams import _current_event  # set per message inside a batch (see _handle_batch)
from mode import Service

from schemas.topics import DEADLETTER, PSA_AGREEMENTS, SYNC_COMMANDS
from services.common.health import HealthServer
from services.common.kafka import CONTENT_TYPE_HEADER, deadletter_headers, describe_error
from services.common.metrics import DEADLETTERED, EVENTS_CONSUMED, EVENTS_PRODUCED
from services.common.settings import KafkaSettings, ObservabilitySettings
from services.mapper.settings import MapperSettings
from services.mapper.state import DeadLetter, Decision, Emit, Incoming, Output, decide

log = logging.getLogger(__name__)

SERVICE = "mapper"
STAGE_INTERNAL = "mapper.internal"
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


class MapperApp:
    """The faust app, its state table, topics and agent, built from settings (nothing at import)."""

    def __init__(
        self,
        settings: MapperSettings,
        kafka: KafkaSettings,
        observability: ObservabilitySettings | None = None,
    ) -> None:
        self.settings = settings
        self.observability = observability or ObservabilitySettings()
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
        self.inputs = self.app.topic(settings.topic(PSA_AGREEMENTS), settings.topic(SYNC_COMMANDS), **_RAW)
        self.app.agent(self.inputs, name="mapper")(self._agent)
        health = HealthServer(
            SERVICE,
            self.observability.health_host,
            self.observability.health_port,
            {"worker": self.is_ready},
        )

        class HealthService(Service):
            async def on_start(self) -> None:
                await health.start()

            async def on_stop(self) -> None:
                await health.stop()

        self.app.service(HealthService)

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
        deliveries: list[Awaitable[Any]] = []
        for event in events:
            message = event.message
            incoming = Incoming(
                topic=self.settings.canonical(message.topic),
                source_topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
                value=message.value if message.value is not None else b"",
            )
            # Table writes go to the changelog partition of faust's "current event"; inside a
            # take_events batch that is the batch's last event, so set it to this one.
            token = _current_event.set(weakref.ref(event))
            try:
                decision = decide(self.table, incoming)
            except Exception as error:  # a bug must not stop the worker: park the message
                log.exception(
                    "unexpected error handling a message",
                    extra={"topic": message.topic, "partition": message.partition, "offset": message.offset},
                )
                decision = Decision("error", [self._internal_error(incoming, error)])
            finally:
                _current_event.reset(token)
            self._consumed(incoming.topic, decision.message_type).inc()
            for output in decision.outputs:
                deliveries.append(await self._produce(output))
        if deliveries:
            await asyncio.gather(*deliveries)

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

    async def _produce(self, output: Output) -> Awaitable[Any]:
        """Hand one message to the producer; returns its delivery future (not awaited here)."""
        if isinstance(output, Emit):
            self._produced(output.topic, output.event.type).inc()
            return await self.app.producer.send(
                self.settings.topic(output.topic),
                output.event.key,
                output.event.to_bytes(),
                None,
                None,
                [CONTENT_TYPE_HEADER],
            )
        stage = dict(output.headers).get("cs-dlq-stage", b"").decode()
        DEADLETTERED.labels(SERVICE, stage, output.reason).inc()
        EVENTS_PRODUCED.labels(SERVICE, DEADLETTER, "deadletter").inc()
        log.warning("dead-lettered message", extra={"reason": output.reason, "stage": stage})
        return await self.app.producer.send(
            self.settings.topic(DEADLETTER), output.key, output.value, None, None, output.headers
        )

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
