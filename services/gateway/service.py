"""Wiring of a gateway instance: settings -> real adapters -> the ASGI app, served by uvicorn until
SIGTERM/SIGINT (uvicorn drains open requests; SSE streams end)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI

from schemas.envelope import CloudEvent
from services.common.health import HealthServer
from services.common.kafka import new_consumer, new_producer, publish
from services.common.logging import configure_logging
from services.common.settings import DatabaseSettings, KafkaSettings, ObservabilitySettings
from services.gateway.app import Gateway, build_app
from services.gateway.auth import FileKeySource, KeySource, TokenVerifier, UrlKeySource, VerifierOptions
from services.gateway.command_store import CommandStore
from services.gateway.outcomes import OutcomeRecorder
from services.gateway.ratelimit import TenantRateLimiter
from services.gateway.readmodel import ReadModel, new_pool
from services.gateway.settings import GatewaySettings
from services.gateway.ui.routes import build_ui_router

log = logging.getLogger(__name__)


class ConfigurationError(ValueError):
    """The gateway cannot start with these settings (message names the setting)."""


def key_source(settings: GatewaySettings) -> KeySource:
    if settings.jwks_url:
        return UrlKeySource(settings.jwks_url, settings.jwks_cache_seconds)
    if settings.jwks_file:
        try:
            return FileKeySource(settings.jwks_file)
        except (OSError, ValueError) as error:
            raise ConfigurationError(f"GATEWAY_JWKS_FILE {settings.jwks_file}: {error}") from None
    raise ConfigurationError("set GATEWAY_JWKS_FILE or GATEWAY_JWKS_URL (the token-signing keys)")


def verifier_for(settings: GatewaySettings) -> TokenVerifier:
    return TokenVerifier(
        key_source(settings),
        VerifierOptions(
            issuer=settings.issuer,
            audience=settings.audience,
            tenant_claim=settings.tenant_claim,
            scope_claim=settings.scope_claim,
            client_scope_claim=settings.client_scope_claim,
            leeway_seconds=settings.leeway_seconds,
        ),
        cache_seconds=settings.token_cache_seconds,
    )


def create_app(
    settings: GatewaySettings | None = None,
    kafka: KafkaSettings | None = None,
    database: DatabaseSettings | None = None,
    observability: ObservabilitySettings | None = None,
) -> FastAPI:
    """The gateway app with its real adapters, started and stopped by the app's lifespan. The API
    port also answers /healthz /readyz /metrics; with HEALTH_PORT they are served there too, like
    every other service (the chart probes that port)."""
    settings = settings or GatewaySettings()
    obs = observability or ObservabilitySettings()
    kafka = kafka or KafkaSettings()
    database = database or DatabaseSettings()
    verifier = verifier_for(settings)
    pool = new_pool(database.url, settings.pool_size)
    state: dict[str, Any] = {}

    async def publish_command(command: CloudEvent) -> None:
        producer: AIOKafkaProducer = state["producer"]
        await publish(producer, settings.commands_topic, command)

    def event_consumer() -> AIOKafkaConsumer:
        return new_consumer(
            kafka, group_id=None, auto_offset_reset="latest", client_id=f"{kafka.client_id}-sse"
        )

    async def database_ready() -> bool:
        return await read_model.ping()

    async def outcomes_ready() -> bool:
        recorder: OutcomeRecorder | None = state.get("recorder")
        return recorder is not None and recorder.assigned.is_set()

    read_model = ReadModel(pool)
    gateway = Gateway(
        settings=settings,
        verifier=verifier,
        read_model=read_model,
        commands=CommandStore(pool, publish_command),
        limiter=TenantRateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        new_event_consumer=event_consumer,
        ready_checks={"database": database_ready, "outcomes": outcomes_ready},
        verify_in_thread=settings.jwks_url is not None,
    )
    app = build_app(gateway, routers=[build_ui_router(gateway)])

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=False)
        producer = new_producer(kafka)
        await producer.start()
        state["producer"] = producer
        # a new group starts at the end: no command of this gateway can precede its first assignment
        # (readiness waits for it); later starts resume from the group's commits
        consumer = new_consumer(
            kafka, settings.events_topic, group_id=settings.outcomes_group_id, auto_offset_reset="latest"
        )
        await consumer.start()
        recorder = OutcomeRecorder(consumer, pool)
        state["recorder"] = recorder
        recorder_task = asyncio.create_task(recorder.run())
        prune_task = asyncio.create_task(_prune_forever(gateway.commands, settings))
        health = HealthServer("gateway", obs.health_host, obs.health_port, dict(gateway.ready_checks))
        await health.start()
        log.info("gateway started", extra={"port": settings.port})
        try:
            yield
        finally:
            await health.stop()
            recorder.stop()
            prune_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await recorder_task
            with contextlib.suppress(asyncio.CancelledError):
                await prune_task
            await consumer.stop()
            await producer.stop()
            await pool.close()
            log.info("gateway stopped")

    app.router.lifespan_context = lifespan
    return app


async def _prune_forever(commands: CommandStore, settings: GatewaySettings) -> None:
    while True:
        with contextlib.suppress(Exception):
            await commands.prune(settings.idempotency_retention_hours)
        await asyncio.sleep(3600)


def main(settings: GatewaySettings | None = None) -> None:
    """Serve the gateway until SIGTERM/SIGINT. Exits with code 2 when no signing keys are configured."""
    obs = ObservabilitySettings()
    configure_logging("gateway", obs.log_level, obs.log_format)
    settings = settings or GatewaySettings()
    try:
        app = create_app(settings, observability=obs)
    except ConfigurationError as error:
        log.error("gateway: %s", error)
        raise SystemExit(2) from None
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
