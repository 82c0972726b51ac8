"""The Prometheus metrics every service exposes on `/metrics` (one set of names for dashboards).

All names start with `contract_sync_`; labels are bounded (service, topic, type, stage, reason,
tenant, status; the gateway's method, route template) — never client or contract ids.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "contract_sync_events_consumed_total", "Messages consumed", ["service", "topic", "type"]
)
EVENTS_PRODUCED = Counter(
    "contract_sync_events_produced_total", "Messages produced", ["service", "topic", "type"]
)
DEADLETTERED = Counter(
    "contract_sync_deadlettered_total", "Messages sent to sync.deadletter.v1", ["service", "stage", "reason"]
)
BATCH_SIZE = Histogram(
    "contract_sync_batch_size",
    "Messages per applied batch",
    ["service"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
APPLY_SECONDS = Histogram(
    "contract_sync_apply_seconds",
    "Time to apply one batch (database transaction included)",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "contract_sync_consumer_lag",
    "Messages behind the end of each partition",
    ["service", "topic", "partition"],
)
CW_REQUESTS = Counter(
    "contract_sync_connectwise_requests_total",
    "ConnectWise API requests by HTTP status",
    ["tenant", "status"],
)
CW_THROTTLED = Counter("contract_sync_connectwise_throttled_total", "ConnectWise 429 answers", ["tenant"])
CW_RETRIES = Counter("contract_sync_connectwise_retries_total", "ConnectWise request retries", ["tenant"])
LAST_SUCCESSFUL_POLL = Gauge(
    "contract_sync_last_successful_poll_timestamp_seconds",
    "Unix time of the tenant's last successful poll run",
    ["tenant"],
)
TENANT_PAUSED = Gauge(
    "contract_sync_tenant_paused", "1 while a tenant is paused after an auth/permission error", ["tenant"]
)

# the gateway (Sync API)
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
CATALOG_CACHE = Counter(
    "contract_sync_gateway_catalog_cache_total",
    "Catalog reads answered from the rendered-document cache (hit) or rendered (miss)",
    ["result"],
)
OUTCOMES_RECORDED = Counter(
    "contract_sync_gateway_outcomes_recorded_total", "Command outcome events recorded from sync.events.v1"
)

FAUST_INTERNALS_MISSING = Gauge(
    "contract_sync_mapper_faust_internals_missing",
    "faust internals the mapper needs that this faust release lacks (start-up self-check; > 0: not ready)",
)
MAPPER_STATE_RECOVERED = Counter(
    "contract_sync_mapper_state_recovered_records_total",
    "State changelog records the mapper read back into its local store, per changelog partition",
    ["partition"],
)
MAPPER_STATE_RECOVERY_FROM = Gauge(
    "contract_sync_mapper_state_recovery_from_offset",
    "The changelog offset the mapper's last recovery of a partition started at (its local checkpoint)",
    ["partition"],
)
