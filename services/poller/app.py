"""The poller process: wires tenants, ConnectWise clients, Kafka, PostgreSQL, the commands consumer,
the optional callback endpoint and the health server, then runs until SIGTERM/SIGINT.

Shutdown: on SIGTERM the tenants' loops stop scheduling; a run in progress gets
`shutdown_grace_s` to finish (its watermark advances as usual), after which it is cancelled and its
watermark stays where it was (the next start re-reads that window; already acknowledged snapshots
are recorded, so they are not re-emitted).

Commands (`sync.commands.v1`): each shard reads every command in its own consumer group
(`{commands_group}-{i}of{n}`) and acts on those of its own tenants: `sync.command.refresh` queues a
refresh of the client (skipped when it was received - the Kafka record's timestamp, never the
sender's `time` - more than `refresh_max_age_s` ago; a timestamp in the future counts as now), or,
naming an `agreement_id`, a re-read of that agreement (a callback hint another replica received and
forwarded here); `sync.command.set_auto_sync` puts the client on/off the fast cadence. Other types,
messages that do not parse and messages whose Kafka key is null or not their subject are skipped
and logged (the mapper dead-letters bad commands). Any other failure of one message (an exception
while acting on it) dead-letters that message here (`poller.commands`, reason and error class,
`services.common.poison`) and the next one is handled; only cancellation and environmental errors
(the broker away) stop the loop's current batch, which is then read again. Offsets are committed
once a batch is handed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from pydantic import ValidationError

from schemas.commands import RefreshCommand, RefreshData, SetAutoSyncCommand
from schemas.envelope import ALL_CLIENTS, utcnow
from schemas.topics import PSA_AGREEMENTS, SYNC_COMMANDS, SYNC_EVENTS, parse
from services.common.health import HealthServer
from services.common.kafka import dead_letter, new_consumer, new_producer
from services.common.poison import MessageFailure, guarded_async
from services.common.settings import DatabaseSettings, KafkaSettings, ObservabilitySettings
from services.poller.callbacks import Forward, KeyFetcher, build_app
from services.poller.connectwise import ConnectWiseClient
from services.poller.publisher import KafkaPublisher, Publisher
from services.poller.service import TenantPoller
from services.poller.settings import PollerSettings
from services.poller.store import PostgresPollerStore
from services.poller.tenants import PollerConfig, connection_for, parse_shard, tenants_for_shard

log = logging.getLogger(__name__)


async def handle_command(
    raw: bytes | None,
    pollers: Mapping[str, TenantPoller],
    max_age: timedelta,
    configured: frozenset[str] | None = None,
    *,
    key: bytes | None,
    received_at: datetime | None = None,
) -> str:
    """Act on one `sync.commands.v1` message with Kafka key `key`; returns what was done (for logs
    and tests).

    `configured`: every tenant id of the tenants file (all shards). A command for a tenant outside
    it, or keyed as another client (or not keyed), is skipped here: the mapper dead-letters it and
    answers `sync.command.rejected`, so nothing is silently lost."""
    if raw is None:
        return "skipped: empty"
    try:
        command = parse(SYNC_COMMANDS, raw)
    except (ValidationError, ValueError) as error:
        log.info(
            "skipping a command that does not parse (the mapper dead-letters it): %s", type(error).__name__
        )
        return "skipped: invalid"
    if key != command.key:
        return "skipped: key_mismatch (the mapper dead-letters it)"
    poller = pollers.get(command.tenantid)
    if poller is None:
        if configured is not None and command.tenantid not in configured:
            return "skipped: unknown tenant (the mapper dead-letters and rejects it)"
        return "skipped: not this shard's tenant"
    if isinstance(command, RefreshCommand):
        now = utcnow()
        received = min(received_at, now) if received_at is not None else now
        if now - received > max_age:
            log.info("skipping a stale refresh command", extra={"command_id": str(command.id)})
            return "skipped: stale refresh"
        if command.data.agreement_id is not None:
            poller.request_recheck(command.data.agreement_id, deleted=command.data.deleted)
            return "recheck queued"
        if not poller.request_refresh(command.data.client_id, str(command.id)):
            return "skipped: unknown client or too many waiting"
        return "refresh queued"
    if isinstance(command, SetAutoSyncCommand):
        done = await poller.set_auto_sync(command.data.client_id, command.data.enabled)
        return f"auto-sync {'on' if command.data.enabled else 'off'}" if done else "skipped: unknown client"
    return f"skipped: {command.type} is not the poller's"


STAGE_COMMANDS = "poller.commands"


async def handle_guarded(
    message: ConsumerRecord[bytes, bytes],
    producer: AIOKafkaProducer,
    pollers: Mapping[str, TenantPoller],
    max_age: timedelta,
    configured: frozenset[str] | None = None,
) -> str:
    """`handle_command`, with any failure of this one message dead-lettered (reason and error
    class, stage `poller.commands`) instead of raised; cancellation and environmental errors
    (`services.common.poison.ENVIRONMENTAL`) are raised."""
    received = datetime.fromtimestamp(message.timestamp / 1000, UTC)
    outcome = await guarded_async(
        lambda: handle_command(
            message.value, pollers, max_age, configured, key=message.key, received_at=received
        )
    )
    if not isinstance(outcome, MessageFailure):
        return outcome
    log.error(
        "a command failed; dead-lettering it",
        extra={"offset": message.offset, "partition": message.partition, "error_class": outcome.error_class},
    )
    await dead_letter(
        producer,
        value=message.value,
        key=message.key,
        reason=outcome.reason,
        error=outcome.error,
        error_class=outcome.error_class,
        stage=STAGE_COMMANDS,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
    )
    return f"dead-lettered: {outcome.reason}"


def hint_forwarder(publisher: Publisher, topic: str) -> Forward:
    """How a replica hands a verified callback of another shard's tenant to that shard: a
    `sync.command.refresh` naming the agreement (client `*`), awaited until Kafka acknowledged it;
    the owning shard's command consumer queues the re-read (`handle_command`)."""

    async def forward(tenant_id: str, agreement_id: int, deleted: bool) -> None:
        hint = RefreshCommand.build(
            RefreshData(
                tenant_id=tenant_id,
                client_id=ALL_CLIENTS,
                requested_by="connectwise-callback",
                agreement_id=agreement_id,
                deleted=deleted,
            ),
            source="contract-sync/poller",
        )
        await (await publisher.send(topic, hint))

    return forward


async def consume_commands(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    pollers: Mapping[str, TenantPoller],
    stop: asyncio.Event,
    max_age: timedelta,
    configured: frozenset[str] | None = None,
) -> None:
    """Handle commands until `stop`; offsets are committed after each batch. An environmental
    error (the broker away while dead-lettering) rewinds to the last commit and retries."""
    while not stop.is_set():
        try:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            for messages in batches.values():
                for message in messages:
                    outcome = await handle_guarded(message, producer, pollers, max_age, configured)
                    log.debug("command handled: %s", outcome, extra={"offset": message.offset})
            if batches:
                await consumer.commit()
        except Exception:
            log.exception("reading or committing sync.commands.v1 failed; retrying")
            with contextlib.suppress(Exception):
                for tp in consumer.assignment():
                    committed = await consumer.committed(tp)
                    if committed is not None:
                        consumer.seek(tp, committed)
            await asyncio.sleep(1.0)


async def run_poller(
    config: PollerConfig,
    settings: PollerSettings,
    *,
    kafka: KafkaSettings | None = None,
    database: DatabaseSettings | None = None,
    observability: ObservabilitySettings | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the poller until `stop` is set (or SIGTERM/SIGINT). Returns the exit code."""
    kafka = kafka or KafkaSettings()
    database = database or DatabaseSettings()
    observability = observability or ObservabilitySettings()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    index, count = parse_shard(settings.shard)
    tenants = tenants_for_shard(config, index, count)
    log.info("poller starting", extra={"shard": settings.shard, "tenants": [t.id for t in tenants]})

    store = await asyncio.to_thread(PostgresPollerStore.from_url, database.url)
    producer = new_producer(kafka)
    await producer.start()
    publisher = KafkaPublisher(producer)
    clients: list[ConnectWiseClient] = []
    pollers: dict[str, TenantPoller] = {}
    client_ids: dict[str, str] = {}
    for tenant in tenants:
        connection = connection_for(tenant, base_dir=config.base_dir)
        client = ConnectWiseClient(connection, tenant_id=tenant.id)
        clients.append(client)
        client_ids[tenant.id] = connection.client_id.get_secret_value()
        pollers[tenant.id] = TenantPoller(
            tenant,
            client,
            publisher,
            store,
            psa_topic=settings.topic(PSA_AGREEMENTS),
            events_topic=settings.topic(SYNC_EVENTS),
            instance=settings.instance,
            heartbeat_interval=timedelta(seconds=settings.heartbeat_interval_s),
        )

    consumer = new_consumer(
        kafka, settings.topic(SYNC_COMMANDS), group_id=f"{settings.commands_group}-{index}of{count}"
    )
    await consumer.start()
    health = HealthServer(
        "poller", observability.health_host, observability.health_port, {"database": store.ping}
    )
    await health.start()
    key_http = httpx.AsyncClient(timeout=10.0)
    callback_server: uvicorn.Server | None = None
    callback_task: asyncio.Task[None] | None = None
    if settings.callbacks_port:
        every_client_id = {
            t.id: connection_for(t, base_dir=config.base_dir).client_id.get_secret_value()
            for t in config.tenants
        }

        app = build_app(
            pollers,
            KeyFetcher(key_http),
            every_client_id,
            tenants={t.id: t for t in config.tenants},
            forward=hint_forwarder(publisher, settings.topic(SYNC_COMMANDS)),
        )
        callback_server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=settings.callbacks_host,
                port=settings.callbacks_port,
                log_level="warning",
                log_config=None,  # uvicorn logs through the service's handler (services.common.logging)
                access_log=False,
                lifespan="off",
                limit_concurrency=settings.callbacks_max_concurrency,
                backlog=256,
                timeout_keep_alive=5,
                timeout_graceful_shutdown=5,
                h11_max_incomplete_event_size=16 * 1024,
            )
        )
        callback_task = asyncio.create_task(callback_server.serve())

    max_age = timedelta(seconds=settings.refresh_max_age_s)
    configured = frozenset(t.id for t in config.tenants)
    commands = asyncio.create_task(consume_commands(consumer, producer, pollers, stop, max_age, configured))
    runs = [asyncio.create_task(p.run_forever(stop), name=f"poller-{p.tenant.id}") for p in pollers.values()]
    try:
        await stop.wait()
    finally:
        log.info("poller stopping")
        for poller in pollers.values():
            poller.wake()
        if runs:
            _, pending = await asyncio.wait(runs, timeout=settings.shutdown_grace_s)
            for task in pending:
                task.cancel()  # abandoned: its watermark is not advanced
            await asyncio.gather(*pending, return_exceptions=True)
        commands.cancel()
        await asyncio.gather(commands, return_exceptions=True)
        if callback_server is not None and callback_task is not None:
            callback_server.should_exit = True
            await asyncio.gather(callback_task, return_exceptions=True)
        await key_http.aclose()
        await health.stop()
        with contextlib.suppress(Exception):
            await consumer.stop()
        with contextlib.suppress(Exception):
            await producer.stop()
        for client in clients:
            await client.aclose()
        store.dispose()
    return 0
