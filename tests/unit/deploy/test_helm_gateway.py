"""The chart's gateway: Deployment with probes and token settings, API Service, optional Ingress, PDB."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
from deploy_helpers import FULL_VALUES, env_of, of_kind, render, workloads


def _named(objects: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    (found,) = [o for o in of_kind(objects, kind) if o["metadata"]["name"].endswith(suffix)]
    return found


def test_the_gateway_serves_its_api_port_behind_a_service_with_probes_on_the_health_port() -> None:
    objects = render()
    (container,) = workloads(objects)["gateway"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["gateway"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "health": 8081}
    env = env_of(container)
    assert env["GATEWAY_PORT"]["value"] == "8080"
    assert env["GATEWAY_JWKS_URL"]["value"].startswith("https://")
    assert env["GATEWAY_ISSUER"]["value"] and env["GATEWAY_AUDIENCE"]["value"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    api = _named(objects, "Service", "-gateway-api")
    assert api["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert of_kind(objects, "Ingress") == []
    (pdb,) = [
        p for p in of_kind(objects, "PodDisruptionBudget") if p["metadata"]["name"].endswith("-gateway")
    ]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= api["spec"]["selector"].items()


def test_the_optional_ingress_routes_the_host_to_the_api_service_and_jwks_can_come_from_a_config_map() -> (
    None
):
    objects = render(FULL_VALUES)
    ingress = _named(objects, "Ingress", "-gateway")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "sync.msp.example"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend["name"].endswith("-gateway-api") and backend["port"] == {"name": "http"}
    assert ingress["spec"]["tls"] == [{"hosts": ["sync.msp.example"], "secretName": "sync-tls"}]
    pod = workloads(objects)["gateway"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert env_of(container)["GATEWAY_JWKS_FILE"]["value"] == "/etc/contract-sync/jwks/jwks.json"
    assert "GATEWAY_JWKS_URL" not in env_of(container)
    assert {"name": "jwks", "configMap": {"name": "idp-jwks"}} in pod["volumes"]


def test_a_gateway_without_signing_keys_is_refused() -> None:
    with pytest.raises(helm_python.HelmError, match="jwksUrl"):
        render({"gateway": {"auth": {"jwksUrl": ""}}})
    assert "gateway" not in workloads(render({"gateway": {"enabled": False}}))
