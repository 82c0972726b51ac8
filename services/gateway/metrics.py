"""The gateway's Prometheus metrics: defined with every service's in `services.common.metrics` (one
set of names for the dashboard), re-exported here under short names."""

from services.common.metrics import (
    AUTH_FAILURES,
    CATALOG_CACHE,
    COMMANDS_PUBLISHED,
    IDEMPOTENT_REPLAYS,
    OUTCOMES_RECORDED,
    RATE_LIMITED,
    REQUEST_SECONDS,
    REQUESTS,
    SSE_CONNECTIONS,
)

__all__ = [
    "AUTH_FAILURES",
    "CATALOG_CACHE",
    "COMMANDS_PUBLISHED",
    "IDEMPOTENT_REPLAYS",
    "OUTCOMES_RECORDED",
    "RATE_LIMITED",
    "REQUESTS",
    "REQUEST_SECONDS",
    "SSE_CONNECTIONS",
]
