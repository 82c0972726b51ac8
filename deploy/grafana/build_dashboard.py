"""Build the Grafana dashboard `deploy/grafana/contract-sync.json` from the metric names the services
expose (`services/common/metrics.py`).

    python deploy/grafana/build_dashboard.py           # write the JSON
    python deploy/grafana/build_dashboard.py --check   # exit 1 when the committed JSON is stale

Deterministic: the same panel list always gives the same bytes. Import the JSON in Grafana
(Dashboards > New > Import) and pick a Prometheus data source that scrapes the pods' /metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_FILE = ROOT / "deploy" / "grafana" / "contract-sync.json"

DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
TENANT = 'tenant=~"$tenant"'
SERVICE = 'service=~"$service"'


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def _panel(
    title: str,
    description: str,
    targets: list[tuple[str, str]],
    *,
    unit: str = "short",
    kind: str = "timeseries",
    width: int = 12,
    height: int = 8,
    thresholds: list[tuple[float | None, str]] | None = None,
) -> dict[str, Any]:
    steps = [{"color": color, "value": value} for value, color in (thresholds or [(None, "green")])]
    panel: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}
        }
        if kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
        "targets": [_target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(targets)],
    }
    return panel


def _row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0}}


def panels() -> list[dict[str, Any]]:
    """Rows and panels, top to bottom; positions are laid out by `_layout`."""
    return [
        _row("Pipeline flow"),
        _panel(
            "Events consumed per second, by topic and type",
            "contract_sync_events_consumed_total: every message a service consumed.",
            [
                (
                    f"sum by (service, topic, type) (rate(contract_sync_events_consumed_total{{{SERVICE}}}[{RATE}]))",
                    "{{service}} {{topic}} {{type}}",
                )
            ],
            unit="ops",
        ),
        _panel(
            "Events produced per second, by topic and type",
            "contract_sync_events_produced_total: every message a service produced.",
            [
                (
                    f"sum by (service, topic, type) (rate(contract_sync_events_produced_total{{{SERVICE}}}[{RATE}]))",
                    "{{service}} {{topic}} {{type}}",
                )
            ],
            unit="ops",
        ),
        _panel(
            "Sync events per second, by type",
            "What dashboards and UIs read on sync.events.v1 (polls completed, contracts applied, rejections, failures, heartbeats).",
            [
                (
                    f'sum by (type) (rate(contract_sync_events_produced_total{{topic="sync.events.v1"}}[{RATE}]))',
                    "{{type}}",
                )
            ],
            unit="ops",
        ),
        _panel(
            "Consumer lag, by service and topic",
            "contract_sync_consumer_lag: messages behind the end of each partition, summed per topic. "
            "Lag that keeps growing means the service needs more replicas (up to the partition count).",
            [(f"sum by (service, topic) (contract_sync_consumer_lag{{{SERVICE}}})", "{{service}} {{topic}}")],
            thresholds=[(None, "green"), (1000, "orange"), (10000, "red")],
        ),
        _row("Writer batches"),
        _panel(
            "Batch size (p50, p95)",
            "contract_sync_batch_size: messages per applied batch.",
            [
                (
                    f"histogram_quantile(0.5, sum by (le, service) (rate(contract_sync_batch_size_bucket{{{SERVICE}}}[{RATE}])))",
                    "p50 {{service}}",
                ),
                (
                    f"histogram_quantile(0.95, sum by (le, service) (rate(contract_sync_batch_size_bucket{{{SERVICE}}}[{RATE}])))",
                    "p95 {{service}}",
                ),
            ],
            width=8,
        ),
        _panel(
            "Apply latency (p50, p95, p99)",
            "contract_sync_apply_seconds: time to apply one batch, database transaction included.",
            [
                (
                    f"histogram_quantile({q}, sum by (le, service) (rate(contract_sync_apply_seconds_bucket{{{SERVICE}}}[{RATE}])))",
                    f"p{int(q * 100)} {{{{service}}}}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
            unit="s",
            width=8,
            thresholds=[(None, "green"), (1, "orange"), (5, "red")],
        ),
        _panel(
            "Batches and messages applied per second",
            "Rate of applied batches (contract_sync_apply_seconds_count) and of the messages in them "
            "(contract_sync_batch_size_sum).",
            [
                (
                    f"sum by (service) (rate(contract_sync_apply_seconds_count{{{SERVICE}}}[{RATE}]))",
                    "batches {{service}}",
                ),
                (
                    f"sum by (service) (rate(contract_sync_batch_size_sum{{{SERVICE}}}[{RATE}]))",
                    "messages {{service}}",
                ),
            ],
            unit="ops",
            width=8,
        ),
        _row("ConnectWise"),
        _panel(
            "ConnectWise requests per second, by tenant and HTTP status",
            "contract_sync_connectwise_requests_total. 401/403 pause the tenant; 429 is throttling.",
            [
                (
                    f"sum by (tenant, status) (rate(contract_sync_connectwise_requests_total{{{TENANT}}}[{RATE}]))",
                    "{{tenant}} {{status}}",
                )
            ],
            unit="reqps",
            width=8,
        ),
        _panel(
            "Throttled requests (429) per second",
            "contract_sync_connectwise_throttled_total, by tenant.",
            [
                (
                    f"sum by (tenant) (rate(contract_sync_connectwise_throttled_total{{{TENANT}}}[{RATE}]))",
                    "{{tenant}}",
                )
            ],
            unit="reqps",
            width=8,
        ),
        _panel(
            "Request retries per second",
            "contract_sync_connectwise_retries_total, by tenant.",
            [
                (
                    f"sum by (tenant) (rate(contract_sync_connectwise_retries_total{{{TENANT}}}[{RATE}]))",
                    "{{tenant}}",
                )
            ],
            unit="reqps",
            width=8,
        ),
        _panel(
            "Time since the last successful poll, per tenant",
            "time() - contract_sync_last_successful_poll_timestamp_seconds. Orange after 15 minutes, red after an hour.",
            [
                (
                    f"time() - max by (tenant) (contract_sync_last_successful_poll_timestamp_seconds{{{TENANT}}})",
                    "{{tenant}}",
                )
            ],
            unit="s",
            kind="stat",
            thresholds=[(None, "green"), (900, "orange"), (3600, "red")],
        ),
        _panel(
            "Paused tenants",
            "contract_sync_tenant_paused: 1 while a tenant is paused after a 401/403 from ConnectWise "
            "(see the sync.failed event for the missing permission).",
            [(f"max by (tenant) (contract_sync_tenant_paused{{{TENANT}}})", "{{tenant}}")],
            kind="stat",
            thresholds=[(None, "green"), (1, "red")],
        ),
        _panel(
            "Mapper: faust internals missing",
            "contract_sync_mapper_faust_internals_missing: faust internals the mapper needs that the running "
            "faust release lacks (start-up self-check). Above 0 the mapper stays not ready: see docs/mapper.md.",
            [("max(contract_sync_mapper_faust_internals_missing)", "missing")],
            kind="stat",
            thresholds=[(None, "green"), (1, "red")],
        ),
        _panel(
            "Mapper: state changelog records read back",
            "contract_sync_mapper_state_recovered_records_total: state changelog records the mapper read back "
            "into its local store (rocksdb://: only those after its checkpoint). "
            "contract_sync_mapper_state_recovery_from_offset: where the last recovery of a partition started.",
            [
                (
                    f"sum by (partition) (increase(contract_sync_mapper_state_recovered_records_total[{RATE}]))",
                    "read back, partition {{partition}}",
                ),
                (
                    "max by (partition) (contract_sync_mapper_state_recovery_from_offset)",
                    "recovery from offset, partition {{partition}}",
                ),
            ],
        ),
        _row("Sync API (gateway)"),
        _panel(
            "Gateway requests per second, by route and status",
            "contract_sync_gateway_requests_total: HTTP requests answered (route = the path template).",
            [
                (
                    f"sum by (route, status) (rate(contract_sync_gateway_requests_total[{RATE}]))",
                    "{{route}} {{status}}",
                )
            ],
            unit="reqps",
        ),
        _panel(
            "Gateway latency p50 / p99, by route",
            "contract_sync_gateway_request_seconds: time to the response's first byte.",
            [
                (
                    f"histogram_quantile(0.5, sum by (le, route) (rate(contract_sync_gateway_request_seconds_bucket[{RATE}])))",
                    "p50 {{route}}",
                ),
                (
                    f"histogram_quantile(0.99, sum by (le, route) (rate(contract_sync_gateway_request_seconds_bucket[{RATE}])))",
                    "p99 {{route}}",
                ),
            ],
            unit="s",
        ),
        _panel(
            "Commands published per second, by type; Idempotency-Key replays",
            "contract_sync_gateway_commands_published_total and contract_sync_gateway_idempotent_replays_total "
            "(retries answered with the earlier command id, nothing published).",
            [
                (f"sum by (type) (rate(contract_sync_gateway_commands_published_total[{RATE}]))", "{{type}}"),
                (f"sum(rate(contract_sync_gateway_idempotent_replays_total[{RATE}]))", "replays"),
            ],
            unit="ops",
            width=8,
        ),
        _panel(
            "Refused requests per second: 401/403 and 429 by tenant",
            "contract_sync_gateway_auth_failures_total (invalid token 401, missing scope 403) and "
            "contract_sync_gateway_rate_limited_total (per-tenant rate limit, 429).",
            [
                (f"sum by (status) (rate(contract_sync_gateway_auth_failures_total[{RATE}]))", "{{status}}"),
                (
                    f"sum by (tenant) (rate(contract_sync_gateway_rate_limited_total{{{TENANT}}}[{RATE}]))",
                    "429 {{tenant}}",
                ),
            ],
            unit="ops",
            width=8,
        ),
        _panel(
            "Open event streams; outcomes recorded and catalog reads per second",
            "contract_sync_gateway_sse_connections (open /v1/events streams), "
            "contract_sync_gateway_outcomes_recorded_total (command outcome events stored) and "
            "contract_sync_gateway_catalog_cache_total (catalog reads answered from the cache: hit, or rendered: miss).",
            [
                ("sum(contract_sync_gateway_sse_connections)", "SSE streams"),
                (f"sum(rate(contract_sync_gateway_outcomes_recorded_total[{RATE}]))", "outcomes/s"),
                (
                    f"sum by (result) (rate(contract_sync_gateway_catalog_cache_total[{RATE}]))",
                    "catalog {{result}}",
                ),
            ],
            width=8,
        ),
        _row("Errors"),
        _panel(
            "Dead-lettered messages per second, by service, stage and reason",
            "contract_sync_deadlettered_total: messages sent to sync.deadletter.v1 (headers name the error).",
            [
                (
                    f"sum by (service, stage, reason) (rate(contract_sync_deadlettered_total{{{SERVICE}}}[{RATE}]))",
                    "{{service}} {{stage}} {{reason}}",
                )
            ],
            unit="ops",
            width=16,
        ),
        _panel(
            "Dead-lettered in the time range",
            "Total messages dead-lettered over the dashboard's time range.",
            [(f"sum(increase(contract_sync_deadlettered_total{{{SERVICE}}}[$__range]))", "dead-lettered")],
            kind="stat",
            width=8,
            thresholds=[(None, "green"), (1, "red")],
        ),
    ]


def _layout(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flow panels left to right in rows of 24 columns; give every panel a stable id."""
    x = y = row_height = 0
    for number, item in enumerate(items, start=1):
        pos = item["gridPos"]
        if item["type"] == "row" or x + pos["w"] > 24:
            y += row_height
            x = row_height = 0
        pos["x"], pos["y"] = x, y
        item["id"] = number
        if item["type"] == "row":
            y += pos["h"]
            continue
        x += pos["w"]
        row_height = max(row_height, pos["h"])
    return items


def dashboard() -> dict[str, Any]:
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "uid": "contract-sync",
        "title": "contract-sync",
        "description": "ConnectWise -> Kafka -> contract records: flow, lag, writer batches, ConnectWise calls, errors.",
        "tags": ["contract-sync", "kafka", "connectwise"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": "service",
                    "label": "Service",
                    "type": "query",
                    "datasource": DS,
                    "query": {
                        "query": "label_values(contract_sync_events_consumed_total, service)",
                        "refId": "service",
                    },
                    "definition": "label_values(contract_sync_events_consumed_total, service)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                    "sort": 1,
                },
                {
                    "name": "tenant",
                    "label": "Tenant",
                    "type": "query",
                    "datasource": DS,
                    "query": {
                        "query": "label_values(contract_sync_connectwise_requests_total, tenant)",
                        "refId": "tenant",
                    },
                    "definition": "label_values(contract_sync_connectwise_requests_total, tenant)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                    "sort": 1,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": _layout(panels()),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Grafana dashboard JSON")
    parser.add_argument("--check", action="store_true", help="fail when the committed JSON is stale")
    args = parser.parse_args(argv)
    text = render()
    relative = DASHBOARD_FILE.relative_to(ROOT)
    if args.check:
        current = DASHBOARD_FILE.read_text(encoding="utf-8") if DASHBOARD_FILE.exists() else ""
        if current != text:
            print(f"{relative} is stale: run python deploy/grafana/build_dashboard.py")
            return 1
        print(f"{relative} is current")
        return 0
    DASHBOARD_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
