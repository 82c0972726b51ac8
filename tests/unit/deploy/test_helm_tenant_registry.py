"""The Helm chart gives the mapper and the writer the poller's tenants file as their tenant
registry (`<COMPONENT>_TENANTS_FILE`), so input for a tenant nobody configured is refused."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from deploy_helpers import FULL_VALUES, env_of, of_kind, render, workloads

from services.common.tenants import tenant_ids_of

PATH = "/etc/contract-sync/tenants.toml"


def container_of(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def tenants_volume(workload: dict[str, Any]) -> dict[str, Any] | None:
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    return volumes.get("tenants")


@pytest.mark.parametrize("values", [{}, FULL_VALUES], ids=["defaults", "everything-on"])
def test_mapper_and_writer_mount_the_pollers_tenants_file_and_name_it_in_their_env(
    values: dict[str, Any],
) -> None:
    objects = render(values)
    by_component = workloads(objects)
    (config_map,) = of_kind(objects, "ConfigMap")
    poller_volume = tenants_volume(by_component["poller"])
    assert poller_volume is not None

    for component in ("mapper", "writer"):
        workload = by_component[component]
        container = container_of(workload)
        assert env_of(container)[f"{component.upper()}_TENANTS_FILE"]["value"] == PATH
        mounts = [m for m in container["volumeMounts"] if m["name"] == "tenants"]
        assert mounts == [{"name": "tenants", "mountPath": PATH, "subPath": "tenants.toml", "readOnly": True}]
        assert tenants_volume(workload) == poller_volume  # the very same ConfigMap as the poller's
        assert poller_volume["configMap"]["name"] == config_map["metadata"]["name"]
        # restarted when the tenants change (the registry is read at start), like the poller
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        poller_annotations = by_component["poller"]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["checksum/tenants"] == poller_annotations["checksum/tenants"]
        assert "connectwise" not in {v["name"] for v in workload["spec"]["template"]["spec"]["volumes"]}
    assert tenant_ids_of(tomllib.loads(config_map["data"]["tenants.toml"]))  # ids the services can read


def test_an_existing_config_map_is_the_registry_of_mapper_and_writer_too() -> None:
    by_component = workloads(render({"tenants": {"existingConfigMap": "my-tenants"}}))
    for component in ("poller", "mapper", "writer"):
        volume = tenants_volume(by_component[component])
        assert volume is not None and volume["configMap"]["name"] == "my-tenants", component


def test_the_registry_can_be_turned_off_leaving_mapper_and_writer_without_the_file() -> None:
    by_component = workloads(render({"tenants": {"registry": False}}))
    for component in ("mapper", "writer"):
        container = container_of(by_component[component])
        assert f"{component.upper()}_TENANTS_FILE" not in env_of(container)
        assert tenants_volume(by_component[component]) is None


def test_without_a_poller_the_tenants_config_map_still_exists_for_the_registry() -> None:
    objects = render({"poller": {"enabled": False}})
    (config_map,) = of_kind(objects, "ConfigMap")
    volume = tenants_volume(workloads(objects)["writer"])
    assert volume is not None and volume["configMap"]["name"] == config_map["metadata"]["name"]
