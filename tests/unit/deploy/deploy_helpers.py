"""Helpers for the deployment tests: render the Helm chart with the real Helm engine, load scripts.

The chart is rendered by `helm-python-sdk` (Helm v4's Go SDK behind a C ABI, shipped in the wheel),
so these tests exercise the same template engine, values schema validation and hook handling as
`helm template`, without a `helm` binary or a cluster.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART_DIR = ROOT / "deploy" / "helm" / "contract-sync"
COMPOSE_FILE = ROOT / "deploy" / "compose" / "docker-compose.yml"
SERVICES = ("poller", "mapper", "writer", "gateway")
RELEASE = "cs"
NAMESPACE = "sync"

# Values that switch on every optional part, with every credential taken from a named Secret.
FULL_VALUES: dict[str, Any] = {
    "kafka": {
        "bootstrapServers": "my-cluster-kafka-bootstrap:9093",
        "securityProtocol": "SASL_SSL",
        "sasl": {
            "mechanism": "SCRAM-SHA-512",
            "username": "contract-sync",
            "existingSecret": "cs-kafka-user",
        },
        "tls": {"caSecret": "my-cluster-cluster-ca-cert", "caKey": "ca.crt"},
    },
    "database": {
        "host": "pg.example.internal",
        "user": "contract_sync",
        "passwordSecret": {"name": "cs-postgres", "key": "password"},
        "sslmode": "verify-full",
        "sslRootCertSecret": {"name": "cs-postgres-ca", "key": "ca.crt"},
    },
    "connectwise": {"existingSecret": "cs-connectwise", "envFromSecret": True},
    "extraEnv": [
        {"name": "EXTRA_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "cs-extra", "key": "token"}}}
    ],
    "poller": {"replicas": 3, "callbacks": {"port": 8090}},
    "kafkaTopics": {
        "strimzi": {"enabled": True, "clusterName": "my-cluster"},
        "ensureJob": {"enabled": True},
    },
    "serviceMonitor": {"enabled": True},
    "gateway": {
        "auth": {"jwksUrl": "", "jwksConfigMap": {"name": "idp-jwks", "key": "jwks.json"}},
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "sync.msp.example",
            "tlsSecret": "sync-tls",
        },
    },
}


# The one value a release must add to the defaults: the CA Secret that the default
# `database.sslmode: verify-full` needs (the chart refuses to render without it).
REQUIRED_VALUES: dict[str, Any] = {"database": {"sslRootCertSecret": {"name": "cs-postgres-ca"}}}


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` deep-merged onto `base` (pure; like Helm merges values files)."""
    result = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def render_files(values: dict[str, Any] | None = None, *, required: bool = True) -> dict[str, str]:
    """Template path -> rendered text (raises `helm_python.HelmError` on schema or template errors).
    `values` are merged onto `REQUIRED_VALUES` unless `required` is False."""
    values = merged(REQUIRED_VALUES, values or {}) if required else (values or {})
    with helm_python.Chart.load(str(CHART_DIR)) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (hooks included, NOTES.txt excluded)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(render_files(values).items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def workloads(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """component label -> the Deployment/StatefulSet running it."""
    return {
        obj["metadata"]["labels"]["app.kubernetes.io/component"]: obj
        for obj in objects
        if obj["kind"] in ("Deployment", "StatefulSet")
    }


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(object name, pod spec) of every object that runs pods."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def load_script(relative: str) -> ModuleType:
    """Import a repository script (e.g. `deploy/grafana/build_dashboard.py`) as a module."""
    path = ROOT / relative
    name = "deploy_script_" + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
