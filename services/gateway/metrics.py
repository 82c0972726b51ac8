"""The gateway's Prometheus metrics (labels bounded: method, route template, status, type)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "contract_sync_gateway_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
REQUEST_SECONDS = Histogram(
    "contract_sync_gateway_request_seconds",
    "Time to answer an HTTP request (SSE: until the stream's first byte)",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
COMMANDS_PUBLISHED = Counter(
    "contract_sync_gateway_commands_published_total", "Commands published to sync.commands.v1", ["type"]
)
IDEMPOTENT_REPLAYS = Counter(
    "contract_sync_gateway_idempotent_replays_total", "Requests answered from an earlier Idempotency-Key"
)
AUTH_FAILURES = Counter(
    "contract_sync_gateway_auth_failures_total", "Requests refused with 401 or 403", ["status"]
)
RATE_LIMITED = Counter("contract_sync_gateway_rate_limited_total", "Requests refused with 429", ["tenant"])
SSE_CONNECTIONS = Gauge("contract_sync_gateway_sse_connections", "Open /v1/events streams")
OUTCOMES_RECORDED = Counter(
    "contract_sync_gateway_outcomes_recorded_total", "Command outcome events recorded from sync.events.v1"
)
