"""The gateway's adapters as one value: what the routes and the guard use (built by `service.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer

from services.gateway.auth import TokenVerifier
from services.gateway.command_store import CommandStore
from services.gateway.ratelimit import TenantRateLimiter
from services.gateway.readmodel import ReadModel
from services.gateway.settings import GatewaySettings


@dataclass
class Gateway:
    """The gateway's adapters (built by `service.py`; tests and the benchmark build their own)."""

    settings: GatewaySettings
    verifier: TokenVerifier
    read_model: ReadModel
    commands: CommandStore
    limiter: TenantRateLimiter
    new_event_consumer: Callable[[], AIOKafkaConsumer]
    ready_checks: dict[str, Callable[[], Awaitable[bool]]]
    verify_in_thread: bool = False
    """True when verification may block (JWKS fetched over HTTP)."""
