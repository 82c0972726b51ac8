"""`contract-sync mapper`: run the mapper's faust worker until SIGTERM/SIGINT.

Before the worker starts: the wire topics are created when missing (idempotent; `--no-create-topics`
to skip) and the state changelog (`<app_id>-state-changelog`, compacted) is created when missing with
as many partitions as `psa.agreements.v1` has.
Exit codes: 0 after a clean stop, 1 when Kafka is unreachable or the topics are inconsistent.
Exit code 2 when MAPPER_TENANTS_FILE names a file that gives no usable tenant ids, or MAPPER_DATADIR
(default `<state dir>/mapper`, see services.common.state_dir) cannot be created.
Environment: KAFKA_BOOTSTRAP_SERVERS (+ KAFKA_*), MAPPER_* (services.mapper.settings; MAPPER_TENANTS_FILE
turns on the unknown-tenant check), LOG_LEVEL, LOG_FORMAT, HEALTH_PORT (0 = no health server).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from schemas.topics import PSA_AGREEMENTS, SYNC_COMMANDS, TOPICS
from services.common.kafka import ensure_topics
from services.common.logging import configure_logging
from services.common.settings import KafkaSettings, ObservabilitySettings, settings_from_args
from services.common.tenants import TenantRegistryError, tenant_registry
from services.mapper.changelog import changelog_spec
from services.mapper.settings import MapperSettings

log = logging.getLogger(__name__)


async def prepare_topics(settings: MapperSettings, kafka: KafkaSettings, *, create: bool) -> int:
    """Create missing topics (when `create`) and return the source topics' common partition count."""
    specs = [dataclasses.replace(spec, name=settings.topic(spec.name)) for spec in TOPICS]
    if create:
        await ensure_topics(kafka, specs, partitions=settings.partitions)
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        sources = [settings.topic(PSA_AGREEMENTS), settings.topic(SYNC_COMMANDS)]
        described = await admin.describe_topics(sources)
    finally:
        await admin.close()
    counts = {d["topic"]: len(d["partitions"]) for d in described if not d.get("error_code")}
    missing = [t for t in sources if not counts.get(t)]
    if missing:
        raise RuntimeError(f"source topics missing: {missing} (run `contract-sync topics ensure`)")
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"source topics are not co-partitioned: {counts}")
    return next(iter(counts.values()))


def run(args: argparse.Namespace) -> int:
    observability = settings_from_args(ObservabilitySettings, args, ("health_port",))
    configure_logging("mapper", args.log_level or observability.log_level, observability.log_format)
    settings, kafka = MapperSettings(), KafkaSettings()
    try:  # faust creates only the last level itself
        Path(settings.datadir).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        log.error("cannot create MAPPER_DATADIR", extra={"datadir": settings.datadir, "error": str(error)})
        return 2
    try:
        tenants = tenant_registry(settings.tenants_file, "mapper")
    except TenantRegistryError as error:
        log.error("invalid tenant registry: %s", error)
        return 2
    try:
        partitions = asyncio.run(prepare_topics(settings, kafka, create=not args.no_create_topics))
    except Exception as error:
        log.error("cannot prepare topics on %s: %s", kafka.bootstrap_servers, error)
        return 1
    if partitions != settings.partitions:
        log.info("state changelog follows the source topics", extra={"partitions": partitions})
        settings = settings.model_copy(update={"partitions": partitions})
    try:  # the mapper's own topic: created even with --no-create-topics
        asyncio.run(ensure_topics(kafka, [changelog_spec(settings.app_id, partitions)]))
    except Exception as error:
        log.error("cannot create the state changelog on %s: %s", kafka.bootstrap_servers, error)
        return 1

    from services.mapper.app import MapperApp  # faust only when the worker really runs

    mapper = MapperApp(settings, kafka, observability, tenants)
    worker = mapper.worker(loglevel=(args.log_level or observability.log_level).lower())
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "mapper", help="run the mapper (faust worker): PSA snapshots + commands -> contract records"
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (env LOG_LEVEL)")
    parser.add_argument(
        "--health-port", type=int, default=None, help="/healthz /readyz /metrics port; 0 = off"
    )
    parser.add_argument("--no-create-topics", action="store_true", help="do not create missing topics")
    parser.set_defaults(func=run)
