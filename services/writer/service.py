"""Wiring of a writer instance: settings -> real adapters -> `Writer`, run until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from services.common.health import Check, HealthServer
from services.common.kafka import new_consumer, new_producer
from services.common.logging import configure_logging
from services.common.settings import DatabaseSettings, KafkaSettings, ObservabilitySettings
from services.common.tenants import TenantRegistryError, tenant_registry
from services.writer.consumer import Writer
from services.writer.settings import WriterSettings
from services.writer.store import AsyncPostgresStore, StoreOptions

log = logging.getLogger(__name__)

ASSIGNORS = (RangePartitionAssignor, RoundRobinPartitionAssignor)
"""Range first: with several instances, partition p of every input topic (all have the same
partition count and are keyed by client, docs/design.md#keys-and-partitioning) goes to the same instance, so one client's
records, catalog events and commands are applied by one writer, in one batch order. Round-robin
stays listed so a group can be upgraded instance by instance (the group uses a protocol all
members support)."""


def bootstrap(
    settings: WriterSettings,
    kafka: KafkaSettings,
    database: DatabaseSettings,
    tenants: frozenset[str] | None = None,
) -> Writer:
    """Build (not start) a writer with a Kafka consumer, an idempotent producer and the store;
    `tenants` = the configured tenant ids (None: no unknown-tenant check).
    Call it inside a running event loop (aiokafka needs one)."""
    consumer = new_consumer(
        kafka,
        settings.records_topic,
        settings.psa_topic,
        settings.commands_topic,
        group_id=settings.group_id,
        max_poll_records=settings.batch_max_records,
        fetch_max_bytes=64 * 1024 * 1024,
        partition_assignment_strategy=ASSIGNORS,
    )
    producer = new_producer(kafka)
    store = AsyncPostgresStore(database.url, StoreOptions(pool_size=settings.pool_size))
    return Writer(settings, consumer, producer, store, tenants=tenants)


def readiness_checks(writer: Writer) -> dict[str, Check]:
    """`/readyz` of a writer: the database answers, and batches apply (false while a batch is
    retried because the database fails or refuses it, and while the writer is paused)."""

    async def database_ready() -> bool:
        return await writer.store.ping()

    return {"database": database_ready, "applying": writer.is_applying}


async def run_writer(writer: Writer, observability: ObservabilitySettings | None = None) -> None:
    """Start the clients, consume until `writer.stop()` (or SIGTERM/SIGINT), then close everything."""
    obs = observability or ObservabilitySettings()
    health = HealthServer("writer", obs.health_host, obs.health_port, readiness_checks(writer))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, writer.stop)
    await writer.producer.start()
    await writer.consumer.start()
    await health.start()
    log.info(
        "writer started", extra={"group_id": writer.settings.group_id, "instance": writer.settings.instance}
    )
    try:
        await writer.run()
    finally:
        await health.stop()
        await writer.consumer.stop()
        await writer.producer.stop()
        await writer.store.close()
        log.info("writer stopped", extra={"batches": writer.batches, "events": writer.applied_messages})


def main(settings: WriterSettings | None = None) -> None:
    """Run a writer until SIGTERM/SIGINT. Exits with code 2 when WRITER_TENANTS_FILE names a file
    that gives no usable tenant ids."""
    obs = ObservabilitySettings()
    configure_logging("writer", obs.log_level, obs.log_format)
    settings = settings or WriterSettings()
    try:
        tenants = tenant_registry(settings.tenants_file, "writer")
    except TenantRegistryError as error:
        log.error("writer: %s", error)
        raise SystemExit(2) from None

    async def _main() -> None:
        # aiokafka clients must be created inside the running loop
        writer = bootstrap(settings, KafkaSettings(), DatabaseSettings(), tenants)
        await run_writer(writer, obs)

    asyncio.run(_main())
