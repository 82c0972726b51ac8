"""The Prometheus metrics every service exposes on `/metrics` (one set of names for dashboards).

All names start with `contract_sync_`; labels are bounded (service, topic, type, stage, reason,
tenant, status) — never client or contract ids.
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
