"""The Helm chart, rendered by the real Helm engine: topics, probes, resources, secrets, sharding."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import helm_python
import kubernetes_validate
import pytest
from deploy_helpers import (
    CHART_DIR,
    FULL_VALUES,
    NAMESPACE,
    SERVICES,
    env_of,
    load_script,
    merged,
    of_kind,
    pod_specs,
    render,
    render_files,
    workloads,
)

from schemas.topics import PSA_AGREEMENTS, TOPICS, TOPICS_BY_NAME

SECRET_LIKE = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE|CREDENTIAL|API_?KEY|DATABASE_URL", re.I)
KUBERNETES_VERSION = "1.30"


@pytest.fixture(scope="module")
def default_objects() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def full_objects() -> list[dict[str, Any]]:
    return render(FULL_VALUES)


# ---- topics ---------------------------------------------------------------------------------


def test_every_registry_topic_has_a_kafka_topic_with_the_registry_settings(
    full_objects: list[dict[str, Any]],
) -> None:
    kafka_topics = {obj["spec"]["topicName"]: obj for obj in of_kind(full_objects, "KafkaTopic")}

    assert set(kafka_topics) == {spec.name for spec in TOPICS}
    for spec in TOPICS:
        topic = kafka_topics[spec.name]
        assert topic["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "my-cluster"
        assert topic["spec"]["partitions"] == spec.partitions
        assert topic["spec"]["replicas"] == 3  # the chart's default, over the registry's local 1
        assert topic["spec"]["config"] == {key: str(value) for key, value in spec.config.items()} | {
            "min.insync.replicas": "2"
        }


def test_every_process_creates_topics_with_the_charts_replication_factor_and_min_insync_replicas(
    full_objects: list[dict[str, Any]],
) -> None:
    for name, spec in pod_specs(full_objects):
        env = env_of(spec["containers"][0])
        if name.endswith("migrate"):
            continue
        assert env["KAFKA_TOPIC_REPLICATION_FACTOR"]["value"] == "3", name
        assert env["KAFKA_TOPIC_MIN_INSYNC_REPLICAS"]["value"] == "2", name


def test_topic_overrides_apply_to_every_topic_and_merge_over_the_registry_config() -> None:
    values = {
        "kafkaTopics": {
            "strimzi": {"enabled": True},
            "partitions": 24,
            "replicas": 3,
            "config": {"min.insync.replicas": "2", "retention.ms": "1000"},
        }
    }
    topics = of_kind(render(values), "KafkaTopic")

    assert len(topics) == len(TOPICS)
    for topic in topics:
        spec = TOPICS_BY_NAME[topic["spec"]["topicName"]]
        assert topic["spec"]["partitions"] == 24
        assert topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"] == {**spec.config, "min.insync.replicas": "2", "retention.ms": "1000"}


def test_kafka_topics_are_kept_on_uninstall_unless_asked_otherwise() -> None:
    kept = of_kind(render({"kafkaTopics": {"strimzi": {"enabled": True}}}), "KafkaTopic")
    dropped = of_kind(
        render({"kafkaTopics": {"strimzi": {"enabled": True, "keepOnUninstall": False}}}), "KafkaTopic"
    )

    assert all(t["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for t in kept)
    assert all("helm.sh/resource-policy" not in t["metadata"]["annotations"] for t in dropped)


def test_no_kafka_topics_or_service_monitor_are_rendered_by_default(
    default_objects: list[dict[str, Any]],
) -> None:
    assert of_kind(default_objects, "KafkaTopic") == []
    assert of_kind(default_objects, "ServiceMonitor") == []


def test_the_chart_topics_file_is_generated_from_the_current_registry() -> None:
    generate = load_script("deploy/helm/generate.py")

    assert (CHART_DIR / "files" / "topics.yaml").read_text(encoding="utf-8") == generate.render_topics()
    assert (CHART_DIR / "files" / "kafka-users.yaml").read_text(encoding="utf-8") == generate.render_users()


def test_kafka_users_with_the_acls_derived_from_the_registry_are_rendered_when_enabled(
    default_objects: list[dict[str, Any]],
) -> None:
    from services.common.kafka_acls import acl_bindings, strimzi_users

    assert of_kind(default_objects, "KafkaUser") == []
    users = of_kind(
        render({"kafkaUsers": {"enabled": True, "clusterName": "kc", "namespace": "kafka"}}), "KafkaUser"
    )
    expected = {u["metadata"]["name"]: u["spec"] for u in strimzi_users(acl_bindings())}

    assert {u["metadata"]["name"]: u["spec"] for u in users} == expected
    assert {u["metadata"]["labels"]["strimzi.io/cluster"] for u in users} == {"kc"}
    assert {u["metadata"]["namespace"] for u in users} == {"kafka"}


# ---- workloads: probes, resources, security ---------------------------------------------------


@pytest.mark.parametrize("values", [{}, FULL_VALUES], ids=["defaults", "everything-on"])
def test_every_service_has_liveness_and_readiness_probes_on_its_health_port(values: dict[str, Any]) -> None:
    by_component = workloads(render(values))

    assert set(by_component) == set(SERVICES)
    for component, workload in by_component.items():
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        health_port = int(env_of(container)["HEALTH_PORT"]["value"])
        assert ports["health"] == health_port > 0, component
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}, component
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}, component


@pytest.mark.parametrize("values", [{}, FULL_VALUES], ids=["defaults", "everything-on"])
def test_every_container_has_cpu_and_memory_requests_and_limits(values: dict[str, Any]) -> None:
    checked = 0
    for name, spec in pod_specs(render(values)):
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["limits"]), name
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            checked += 1
    assert checked >= 4  # three services and the migration job


def test_values_without_resource_limits_are_refused() -> None:
    with pytest.raises(helm_python.HelmValuesError, match="limits"):
        render({"writer": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": None}}})


def test_every_pod_runs_as_non_root_with_a_read_only_root_file_system(
    full_objects: list[dict[str, Any]],
) -> None:
    for name, spec in pod_specs(full_objects):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name


def test_each_service_runs_its_own_cli_sub_command_from_the_one_image(
    full_objects: list[dict[str, Any]],
) -> None:
    images = set()
    for component, workload in workloads(full_objects).items():
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert container["args"][0] == component
        images.add(container["image"])
    assert images == {"contract-sync:0.1.0"}


# ---- secrets ----------------------------------------------------------------------------------


def test_no_secret_value_is_inlined_and_every_credential_is_a_secret_reference(
    full_objects: list[dict[str, Any]],
) -> None:
    assert of_kind(full_objects, "Secret") == []
    referenced: set[str] = set()
    for name, spec in pod_specs(full_objects):
        for container in spec["containers"]:
            for var in container.get("env", []):
                if "valueFrom" in var and "secretKeyRef" in var["valueFrom"]:
                    referenced.add(var["valueFrom"]["secretKeyRef"]["name"])
                elif SECRET_LIKE.search(var["name"]):
                    # the only secret-looking plain value allowed: a URL without a password
                    assert var["name"] == "DATABASE_URL", (name, var["name"])
                    assert not re.search(r"://[^/@]*:[^/@]*@", var["value"]), "password in DATABASE_URL"
            for source in container.get("envFrom", []):
                referenced.add(source["secretRef"]["name"])
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                referenced.add(volume["secret"]["secretName"])

    assert referenced == {
        "cs-kafka-user",
        "my-cluster-cluster-ca-cert",
        "cs-postgres",
        "cs-postgres-ca",
        "cs-connectwise",
        "cs-extra",
    }


def test_the_database_url_can_come_whole_from_an_existing_secret() -> None:
    objects = render({"database": {"urlSecret": {"name": "cs-db-url", "key": "url"}}})

    for name, spec in pod_specs(objects):
        env = env_of(spec["containers"][0])
        if name.endswith(("mapper", "topics")):
            assert "DATABASE_URL" not in env, name
            continue
        assert env["DATABASE_URL"] == {
            "name": "DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": "cs-db-url", "key": "url"}},
        }
        assert "PGPASSWORD" not in env


@pytest.mark.parametrize(
    "values",
    [
        {"database": {"password": "hunter2"}},
        {"kafka": {"sasl": {"password": "hunter2"}}},
        {"connectwise": {"privateKey": "hunter2"}},
        {"extraEnv": [{"name": "SOME_PASSWORD", "value": "hunter2"}]},
        {"writer": {"env": {"WRITER_API_TOKEN": "hunter2"}}},
        {"poller": {"env": {"DATABASE_URL": "postgresql://u:hunter2@db/x"}}},
    ],
    ids=[
        "database.password",
        "kafka.sasl.password",
        "connectwise.privateKey",
        "extraEnv",
        "env-token",
        "env-url",
    ],
)
def test_values_that_would_inline_a_secret_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        render_files(values)


def test_sasl_without_an_existing_secret_fails_instead_of_running_without_a_password() -> None:
    with pytest.raises(helm_python.HelmRenderError, match="existingSecret"):
        render_files(
            {"kafka": {"securityProtocol": "SASL_SSL", "sasl": {"mechanism": "PLAIN", "username": "u"}}}
        )


def test_the_tenants_config_map_names_credentials_only_by_env_or_file(
    full_objects: list[dict[str, Any]],
) -> None:
    (config_map,) = of_kind(full_objects, "ConfigMap")
    document = tomllib.loads(config_map["data"]["tenants.toml"])

    assert document["tenants"]
    for tenant in document["tenants"]:
        for name, ref in tenant["credentials"].items():
            assert isinstance(ref, dict) and set(ref) in ({"env"}, {"file"}), name


def test_the_default_tenants_file_is_accepted_by_the_poller(default_objects: list[dict[str, Any]]) -> None:
    from services.poller.tenants import parse_config

    (config_map,) = of_kind(default_objects, "ConfigMap")
    config = parse_config(tomllib.loads(config_map["data"]["tenants.toml"]))

    assert [tenant.id for tenant in config.tenants] == ["acme"]


# ---- Kafka TLS/SASL and PostgreSQL sslmode -------------------------------------------------------


def test_kafka_sasl_and_tls_and_postgres_sslmode_reach_every_process(
    full_objects: list[dict[str, Any]],
) -> None:
    for name, spec in pod_specs(full_objects):
        container = spec["containers"][0]
        env = env_of(container)
        mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        if name.endswith("migrate"):  # the migrate Job talks to PostgreSQL only
            assert not any(key.startswith("KAFKA_") for key in env), name
            assert env["PGSSLMODE"]["value"] == "verify-full", name
            continue
        assert env["KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL", name
        assert env["KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512", name
        assert env["KAFKA_SASL_USERNAME"]["value"].startswith("contract-sync-"), name
        assert env["KAFKA_SSL_CAFILE"]["value"] == mounts["kafka-ca"] + "/ca.crt", name
        assert volumes["kafka-ca"]["secret"]["secretName"] == "my-cluster-cluster-ca-cert", name
        if name.endswith(("mapper", "topics")):
            assert "DATABASE_URL" not in env, name
            continue
        assert env["DATABASE_URL"]["value"].endswith("?sslmode=verify-full"), name
        assert env["PGSSLMODE"]["value"] == "verify-full", name
        assert env["PGSSLROOTCERT"]["value"] == mounts["postgres-ca"] + "/ca.crt", name


PASSWORD_KEYS = {
    "migrate": "owner-password",
    "poller": "poller-password",
    "writer": "writer-password",
    "gateway": "reader-password",
}


def test_each_component_connects_to_postgres_as_its_own_role_and_the_mapper_not_at_all(
    full_objects: list[dict[str, Any]],
) -> None:
    roles = {}
    for name, spec in pod_specs(full_objects):
        env = env_of(spec["containers"][0])
        component = name.removeprefix("cs-contract-sync-")
        if "DATABASE_URL" not in env:
            roles[component] = None
            continue
        roles[component] = env["DATABASE_URL"]["value"].split("//", 1)[1].split("@", 1)[0]
        secret = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": "cs-postgres", "key": PASSWORD_KEYS[component]}, name

    assert roles == {
        "migrate": "contract_sync_owner",
        "topics": None,
        "poller": "contract_sync_poller",
        "mapper": None,
        "writer": "contract_sync_writer",
        "gateway": "contract_sync_reader",
    }


def test_each_component_authenticates_to_kafka_as_its_own_principal() -> None:
    values = merged(
        FULL_VALUES,
        {"kafka": {"sasl": {"users": {"writer": {"username": "w", "existingSecret": "w-secret"}}}}},
    )
    users = {}
    for name, spec in pod_specs(render(values)):
        env = env_of(spec["containers"][0])
        if "KAFKA_SASL_USERNAME" not in env:
            continue
        users[name.removeprefix("cs-contract-sync-")] = (
            env["KAFKA_SASL_USERNAME"]["value"],
            env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"],
        )

    assert users == {
        "topics": ("contract-sync-admin", "cs-kafka-user"),
        "poller": ("contract-sync-poller", "cs-kafka-user"),
        "mapper": ("contract-sync-mapper", "cs-kafka-user"),
        "writer": ("w", "w-secret"),
        "gateway": ("contract-sync-gateway", "cs-kafka-user"),
    }


def test_the_default_verify_full_sslmode_refuses_to_render_without_the_database_ca_secret() -> None:
    with pytest.raises(helm_python.HelmRenderError, match="sslRootCertSecret"):
        render_files({}, required=False)
    env = env_of(workloads(render())["writer"]["spec"]["template"]["spec"]["containers"][0])
    assert env["PGSSLMODE"]["value"] == "verify-full"


def test_a_sasl_protocol_without_a_mechanism_refuses_to_render() -> None:
    with pytest.raises(helm_python.HelmRenderError, match="mechanism"):
        render_files({"kafka": {"securityProtocol": "SASL_SSL", "sasl": {"existingSecret": "s"}}})


# ---- scaling ----------------------------------------------------------------------------------


def test_poller_replica_i_of_n_polls_shard_i_of_n(full_objects: list[dict[str, Any]]) -> None:
    poller = workloads(full_objects)["poller"]
    (container,) = poller["spec"]["template"]["spec"]["containers"]
    env = env_of(container)

    assert poller["kind"] == "StatefulSet"
    assert poller["spec"]["replicas"] == 3
    assert container["args"][container["args"].index("--shard") + 1] == "$(POD_INDEX)/3"
    assert (
        env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    # POD_INDEX must be defined before Kubernetes expands $(POD_INDEX) in the arguments
    assert container["env"][0]["name"] == "POD_INDEX"


def test_mapper_and_writer_replicas_are_configurable_and_the_mapper_knows_the_partition_count() -> None:
    by_component = workloads(render({"mapper": {"replicas": 4}, "writer": {"replicas": 5}}))
    mapper_env = env_of(by_component["mapper"]["spec"]["template"]["spec"]["containers"][0])

    assert by_component["mapper"]["spec"]["replicas"] == 4
    assert by_component["writer"]["spec"]["replicas"] == 5
    assert mapper_env["MAPPER_PARTITIONS"]["value"] == str(TOPICS_BY_NAME[PSA_AGREEMENTS].partitions)


def test_more_replicas_than_partitions_is_warned_about_in_the_notes() -> None:
    partitions = TOPICS_BY_NAME[PSA_AGREEMENTS].partitions
    notes_over = render_files({"writer": {"replicas": partitions + 1}})["contract-sync/templates/NOTES.txt"]
    notes_ok = render_files({"writer": {"replicas": partitions}})["contract-sync/templates/NOTES.txt"]

    assert "WARNING" in notes_over
    assert "WARNING" not in notes_ok


# ---- jobs, services, monitoring ---------------------------------------------------------------


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook_job(
    default_objects: list[dict[str, Any]],
) -> None:
    (job,) = of_kind(default_objects, "Job")
    annotations = job["metadata"]["annotations"]

    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "migrate"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_optional_topics_job_runs_after_the_migration(full_objects: list[dict[str, Any]]) -> None:
    jobs = {
        job["spec"]["template"]["spec"]["containers"][0]["args"][0]: job
        for job in of_kind(full_objects, "Job")
    }

    assert set(jobs) == {"db", "topics"}
    assert jobs["topics"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["topics", "ensure"]
    weight = {key: int(job["metadata"]["annotations"]["helm.sh/hook-weight"]) for key, job in jobs.items()}
    assert weight["db"] < weight["topics"]


def test_the_service_monitor_scrapes_metrics_of_every_service(full_objects: list[dict[str, Any]]) -> None:
    (monitor,) = of_kind(full_objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [
        service
        for service in of_kind(full_objects, "Service")
        if selector.items() <= service["metadata"]["labels"].items()
    ]

    assert {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in scraped} == set(SERVICES)
    assert monitor["spec"]["endpoints"] == [
        {"port": "health", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    for service in scraped:
        assert [port["name"] for port in service["spec"]["ports"]] == ["health"]
        pods = workloads(full_objects)[service["metadata"]["labels"]["app.kubernetes.io/component"]]
        assert service["spec"]["selector"].items() <= pods["spec"]["template"]["metadata"]["labels"].items()


# ---- schema validation and lint -----------------------------------------------------------------


@pytest.mark.parametrize("values", [{}, FULL_VALUES], ids=["defaults", "everything-on"])
def test_rendered_manifests_validate_against_the_kubernetes_schemas(values: dict[str, Any]) -> None:
    validated = set()
    for obj in render(values):
        if obj["kind"] in ("KafkaTopic", "KafkaUser", "ServiceMonitor"):
            continue  # CRDs: kubernetes-validate ships only the built-in kinds' schemas
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        validated.add(obj["kind"])
    assert {"Deployment", "StatefulSet", "Job", "Service", "ConfigMap", "ServiceAccount"} <= validated


def test_the_schema_validator_rejects_a_broken_deployment(default_objects: list[dict[str, Any]]) -> None:
    deployment = dict(of_kind(default_objects, "Deployment")[0])
    deployment["spec"] = {**deployment["spec"], "replica": 2}  # misspelt field

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("values", [{}, FULL_VALUES], ids=["defaults", "everything-on"])
def test_the_chart_passes_helm_lint_in_strict_mode(values: dict[str, Any]) -> None:
    report = helm_python.lint(str(CHART_DIR), values, strict=True, kube_version="v1.30.0")

    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_services_with_several_replicas_get_a_disruption_budget_selecting_their_pods() -> None:
    objects = render(
        {
            "poller": {"replicas": 1},
            "mapper": {"replicas": 2},
            "writer": {"replicas": 3},
            "gateway": {"replicas": 1},
        }
    )
    budgets = {
        b["metadata"]["labels"]["app.kubernetes.io/component"]: b
        for b in of_kind(objects, "PodDisruptionBudget")
    }
    by_component = workloads(objects)

    assert set(budgets) == {"mapper", "writer"}
    for component, budget in budgets.items():
        pod_labels = by_component[component]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["maxUnavailable"] == 1
        assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_the_mapper_is_a_statefulset_keeping_its_rocksdb_store_on_a_claim_per_pod() -> None:
    mapper = workloads(render())["mapper"]
    container = mapper["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}

    assert mapper["kind"] == "StatefulSet"
    assert env["MAPPER_STORE"]["value"] == "rocksdb://"
    [claim] = mapper["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert mounts["state"] == env["MAPPER_DATADIR"]["value"]
    # static group membership by pod name: a restarted pod takes its partitions back at once
    assert env["MAPPER_GROUP_INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_a_mapper_on_the_memory_store_gets_no_claim() -> None:
    mapper = workloads(render({"mapper": {"store": "memory://"}}))["mapper"]
    container = mapper["spec"]["template"]["spec"]["containers"][0]

    assert env_of(container)["MAPPER_STORE"]["value"] == "memory://"
    assert "volumeClaimTemplates" not in mapper["spec"]
    assert "state" not in {mount["name"] for mount in container["volumeMounts"]}
