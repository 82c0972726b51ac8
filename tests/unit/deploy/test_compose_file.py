"""The docker-compose stack: a valid Compose file naming every service, wired in the right order."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose
from deploy_helpers import COMPOSE_FILE

SERVICES = ("poller", "mapper", "writer")
"""The pipeline services the compose file runs (the gateway is not in it yet)."""


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return document


def test_the_compose_file_is_valid_for_the_compose_specification(compose: dict[str, Any]) -> None:
    # compose-spec (the Rust compose_spec parser) refuses unknown keys and dangling references.
    parsed = PyCompose.from_json(json.dumps(compose))
    parsed.validate()

    assert parsed.to_spec().services is not None


def test_the_compose_validator_rejects_a_misspelt_key(compose: dict[str, Any]) -> None:
    broken = {
        **compose,
        "services": {**compose["services"], "writer": {**compose["services"]["writer"], "comand": []}},
    }

    with pytest.raises(ValueError, match="comand"):
        PyCompose.from_json(json.dumps(broken))


def test_the_compose_file_names_every_service_the_simulator_kafka_and_postgres(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]

    assert {*SERVICES, "cw-sim", "kafka", "postgres"} <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:4.0.2"
    assert services["postgres"]["image"] == "postgres:17"


def test_services_run_from_the_production_image_and_the_simulator_from_the_devtools_target(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]

    for name in (*SERVICES, "migrate", "topics"):
        assert services[name]["image"] == "contract-sync:local", name
        assert services[name]["build"]["dockerfile"] == "Dockerfile", name
        assert "target" not in services[name]["build"], name  # the default target: the production image
    assert services["cw-sim"]["image"] == "contract-sync-devtools:local"
    assert services["cw-sim"]["build"] == {
        "context": "../..",
        "dockerfile": "Dockerfile",
        "target": "devtools",
    }
    assert services["poller"]["command"][:3] == ["poller", "--config", "/etc/contract-sync/tenants.toml"]
    assert services["mapper"]["command"] == ["mapper"]
    assert services["writer"]["command"] == ["writer"]
    assert services["cw-sim"]["command"][:2] == ["cw-sim", "serve"]
    assert services["migrate"]["command"] == ["db", "migrate"]
    assert services["topics"]["command"] == ["topics", "ensure"]


def test_services_start_after_the_schema_and_topics_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    done = "service_completed_successfully"

    assert services["writer"]["depends_on"]["migrate"]["condition"] == done
    for name in SERVICES:
        assert services[name]["depends_on"]["topics"]["condition"] == done, name
    assert services["db-roles"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_every_service_exposes_health_and_is_health_checked_on_readyz(compose: dict[str, Any]) -> None:
    services = compose["services"]

    for name in SERVICES:
        assert services[name]["environment"]["HEALTH_PORT"] == "8081", name
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"]), name


def test_the_compose_tenants_file_is_accepted_by_the_poller_and_holds_no_inline_secret(
    compose: dict[str, Any],
) -> None:
    from services.poller.tenants import parse_config

    document = tomllib.loads((COMPOSE_FILE.parent / "tenants.toml").read_text(encoding="utf-8"))
    config = parse_config(document)
    env = compose["services"]["poller"]["environment"]

    (tenant,) = config.tenants
    for name in ("public_key", "private_key", "client_id"):
        ref = getattr(tenant.credentials, name)
        assert ref.env is not None and ref.env in env, name


def test_mapper_and_writer_read_the_pollers_tenants_file_as_their_registry_without_its_secrets(
    compose: dict[str, Any],
) -> None:
    from services.common.tenants import load_tenant_ids

    services = compose["services"]
    (poller_mount,) = services["poller"]["volumes"]
    source, target = poller_mount.split(":")[:2]
    for name in ("mapper", "writer"):
        service = services[name]
        assert service["environment"][f"{name.upper()}_TENANTS_FILE"] == target
        assert poller_mount in service["volumes"]  # the same file as the poller's, read-only
        assert not any(key.startswith(("SIM_CW_", "CW_")) for key in service["environment"])
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"  # the shared env is kept
    assert load_tenant_ids(COMPOSE_FILE.parent / source) == frozenset({"sim"})


def test_every_published_port_is_bound_to_the_loopback_interface_only(compose: dict[str, Any]) -> None:
    published = [port for service in compose["services"].values() for port in service.get("ports", [])]
    assert published
    assert all(str(port).startswith("127.0.0.1:") for port in published), published


def test_the_writer_and_poller_connect_as_their_own_database_roles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "contract_sync_writer:" in services["writer"]["environment"]["DATABASE_URL"]
    assert "contract_sync_poller:" in services["poller"]["environment"]["DATABASE_URL"]
    assert services["db-roles"]["command"] == ["db", "roles", "--apply"]
    assert services["migrate"]["depends_on"]["db-roles"] == {"condition": "service_completed_successfully"}
