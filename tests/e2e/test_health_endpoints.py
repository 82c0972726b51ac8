"""Every service's /healthz, /readyz and /metrics as operators and Kubernetes probes use them (issue 9)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from e2e_support import E2E

from devtools.stack import LocalStack
from services.common.db import migrate
from services.launcher.group import ProcessGroup, contract_sync_command, free_port, wait_until

SERVICES = ("writer", "mapper", "poller")


def get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)


@pytest.mark.parametrize("service", SERVICES)
def test_healthz_says_alive_and_readyz_names_each_check_as_ready(e2e: E2E, service: str) -> None:
    port = e2e.pipeline.health_ports[service]
    alive = get(port, "/healthz")
    assert alive.status_code == 200
    assert alive.json() == {"status": "alive", "service": service}
    ready = get(port, "/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["service"] == service
    assert body["checks"] and all(body["checks"].values())


@pytest.mark.parametrize(
    ("service", "metric"),
    [
        ("writer", "contract_sync_events_consumed_total"),
        ("writer", "contract_sync_apply_seconds"),
        ("writer", "contract_sync_batch_size"),
        ("writer", "contract_sync_consumer_lag"),
        ("mapper", "contract_sync_events_produced_total"),
        ("poller", "contract_sync_connectwise_requests_total"),
        ("poller", "contract_sync_last_successful_poll_timestamp_seconds"),
    ],
)
def test_metrics_are_served_in_prometheus_text_format_with_the_documented_names(
    e2e: E2E, service: str, metric: str
) -> None:
    response = get(e2e.pipeline.health_ports[service], "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert f"# TYPE {metric} " in response.text


def test_writer_readiness_turns_false_while_postgresql_is_stopped_and_true_again_after(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A private PostgreSQL (never the shared one), a real writer process pointed at it."""
    stack = LocalStack(
        tmp_path / "stack", pg_port=free_port(), kafka_port=free_port(), controller_port=free_port()
    )
    stack.start_postgres()
    group = ProcessGroup(tmp_path / "logs")
    try:
        database_url = stack.endpoints.database_url
        migrate(database_url)
        port = free_port()
        group.start(
            "writer",
            contract_sync_command("writer"),
            env={
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "DATABASE_URL": database_url,
                "WRITER_GROUP_ID": f"health-{os.getpid()}-{port}",
            },
            health_port=port,
        )

        def ready() -> bool:
            return get(port, "/readyz").status_code == 200

        def not_ready() -> bool:
            response = get(port, "/readyz")
            return response.status_code == 503 and response.json()["status"] == "not_ready"

        assert wait_until(ready, timeout_s=90), group.members["writer"].log_tail()
        stack.stop_postgres()
        assert wait_until(not_ready, timeout_s=60), group.members["writer"].log_tail()
        assert get(port, "/healthz").status_code == 200  # alive all along: no restart wanted
        stack.start_postgres()
        assert wait_until(ready, timeout_s=90), group.members["writer"].log_tail()
        assert group.members["writer"].alive()
    finally:
        group.stop()
        stack.stop_postgres()
