"""Kafka identities and their ACLs, derived from the topic registry (`schemas.topics`): one source of
truth for who produces and consumes what.

Every service authenticates as its own principal (`User:contract-sync-<service>`). The ACLs are pure
data (`acl_bindings`): per topic, WRITE (+DESCRIBE) for its producers and READ (+DESCRIBE) for its
consumers; READ on each consumer's group (a prefix for the poller's per-shard groups and the
dashboard's); the mapper's faust app id as a prefix for its changelog topics (CREATE, DESCRIBE,
DESCRIBE_CONFIGS, READ, WRITE) and its group; DESCRIBE on the cluster for idempotent producers'
metadata (no cluster-level ACL: WRITE on a topic covers idempotent producing). Nothing else is allowed: with `allow.everyone.if.no.acl.found=false` a principal without a
binding is refused.

Renderings: `kafka_acls_commands` (the `kafka-acls.sh` lines an operator runs with an admin
principal's `--command-config`), `strimzi_users` (Strimzi `KafkaUser` resources with
`authorization.type: simple`). `apply_with_cli` adds them in one admin connection (`deploy/local/ApplyAcls.java`, Kafka's Admin
API on the jars the local stack downloads; aiokafka's admin client has no ACL API).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.topics import TOPICS, TopicSpec

PRINCIPAL_PREFIX = "contract-sync-"
SERVICES = ("poller", "mapper", "writer", "gateway", "dashboard")

CONSUMER_GROUPS: dict[str, tuple[str, str]] = {
    # service -> (group name or prefix, pattern type); the defaults of each service's settings
    "poller": ("contract-sync-poller", "PREFIXED"),  # one group per shard: contract-sync-poller-<i>of<n>
    "mapper": ("contract-sync-mapper", "LITERAL"),  # faust's group is its app id
    "writer": ("contract-sync-writer", "LITERAL"),
    "gateway": ("contract-sync-gateway", "LITERAL"),
    "dashboard": ("contract-sync-dashboard", "PREFIXED"),
}
MAPPER_CHANGELOG_PREFIX = "contract-sync-mapper-"
"""faust names the mapper's internal topics `<app id>-<table>-changelog` (and `<app id>-__assignor...`)."""


@dataclass(frozen=True, order=True)
class AclBinding:
    principal: str  # e.g. User:contract-sync-writer
    resource_type: str  # TOPIC, GROUP or CLUSTER
    resource_name: str
    pattern_type: str  # LITERAL or PREFIXED
    operation: str  # READ, WRITE, DESCRIBE, CREATE, DESCRIBE_CONFIGS, ...


def principal(service: str) -> str:
    return f"User:{PRINCIPAL_PREFIX}{service}"


def acl_bindings(specs: Sequence[TopicSpec] = TOPICS, services: Iterable[str] = SERVICES) -> list[AclBinding]:
    """Every ALLOW binding the services need, sorted (pure, deterministic)."""
    wanted = set(services)
    bindings: set[AclBinding] = set()

    def allow(service: str, resource: str, name: str, pattern: str, *operations: str) -> None:
        if service in wanted:
            for operation in operations:
                bindings.add(AclBinding(principal(service), resource, name, pattern, operation))

    for spec in specs:
        for service in spec.producers:
            allow(service, "TOPIC", spec.name, "LITERAL", "WRITE", "DESCRIBE")
        for service in spec.consumers:
            allow(service, "TOPIC", spec.name, "LITERAL", "READ", "DESCRIBE")
    for service, (group, pattern) in CONSUMER_GROUPS.items():
        if any(service in spec.consumers for spec in specs):
            allow(service, "GROUP", group, pattern, "READ", "DESCRIBE")
    allow(
        "mapper",
        "TOPIC",
        MAPPER_CHANGELOG_PREFIX,
        "PREFIXED",
        "CREATE",
        "DESCRIBE",
        "DESCRIBE_CONFIGS",
        "READ",
        "WRITE",
    )
    # idempotent producers need no cluster ACL: WRITE on a topic implies it (Kafka >= 3.2, KIP-679)
    return sorted(bindings)


_CLI_RESOURCE = {"TOPIC": "--topic", "GROUP": "--group", "CLUSTER": "--cluster"}


def cli_arguments(bindings: Sequence[AclBinding]) -> list[list[str]]:
    """`kafka-acls --add` arguments, one list per (principal, resource, pattern) with all its
    operations (without bootstrap/config options; pure)."""
    grouped: dict[tuple[str, str, str, str], list[str]] = {}
    for b in bindings:
        grouped.setdefault((b.principal, b.resource_type, b.resource_name, b.pattern_type), []).append(
            b.operation
        )
    commands = []
    for (who, resource, name, pattern), operations in grouped.items():
        args = ["--add", "--allow-principal", who]
        for operation in operations:
            args += ["--operation", _cli_operation(operation)]
        args += ["--cluster"] if resource == "CLUSTER" else [_CLI_RESOURCE[resource], name]
        args += ["--resource-pattern-type", pattern.lower()]
        commands.append(args)
    return commands


def _cli_operation(operation: str) -> str:
    return "".join(part.capitalize() for part in operation.split("_"))


def kafka_acls_commands(
    bindings: Sequence[AclBinding], bootstrap: str = "<bootstrap>", command_config: str = "admin.properties"
) -> list[str]:
    """One `kafka-acls.sh` line per binding (pure)."""
    return [
        " ".join(
            ["kafka-acls.sh", "--bootstrap-server", bootstrap, "--command-config", command_config, *args]
        )
        for args in cli_arguments(bindings)
    ]


def strimzi_users(
    bindings: Sequence[AclBinding],
    *,
    cluster: str = "my-cluster",
    namespace: str | None = None,
    authentication: str = "scram-sha-512",
) -> list[dict[str, Any]]:
    """One Strimzi `KafkaUser` per principal, with its ACLs (pure)."""
    users: dict[str, list[dict[str, Any]]] = {}
    for binding in bindings:
        name = binding.principal.removeprefix("User:")
        resource: dict[str, Any] = {"type": binding.resource_type.lower()}
        if binding.resource_type != "CLUSTER":
            resource |= {"name": binding.resource_name, "patternType": binding.pattern_type.lower()}
        users.setdefault(name, []).append(
            {"resource": resource, "operations": [_cli_operation(binding.operation)], "host": "*"}
        )
    documents = []
    for name, acls in sorted(users.items()):
        metadata: dict[str, Any] = {"name": name, "labels": {"strimzi.io/cluster": cluster}}
        if namespace:
            metadata["namespace"] = namespace
        documents.append(
            {
                "apiVersion": "kafka.strimzi.io/v1beta2",
                "kind": "KafkaUser",
                "metadata": metadata,
                "spec": {
                    "authentication": {"type": authentication},
                    "authorization": {"type": "simple", "acls": acls},
                },
            }
        )
    return documents


APPLY_PROGRAM = Path(__file__).resolve().parents[2] / "deploy" / "local" / "ApplyAcls.java"
"""A single-file Java program adding bindings through Kafka's Admin API in one connection (one JVM
for all of them, instead of one `kafka-acls.sh` per resource)."""


def binding_lines(bindings: Sequence[AclBinding]) -> str:
    """The stdin of `ApplyAcls.java`: one tab-separated binding per line (pure)."""
    return "".join(
        f"{b.principal}\t{b.resource_type}\t{b.resource_name}\t{b.pattern_type}\t{b.operation}\n"
        for b in bindings
    )


def apply_with_cli(
    bindings: Sequence[AclBinding],
    *,
    bootstrap: str,
    command_config: Path,
    libs: Path,
    java: str = "java",
    program: Path = APPLY_PROGRAM,
) -> None:
    """Add every binding with `ApplyAcls.java` (run by the JDK's source launcher on the Kafka jars in
    `libs`), authenticated by `command_config` (an admin principal's client properties). Idempotent
    (adding an existing ACL changes nothing). Raises `subprocess.CalledProcessError` carrying the
    broker's refusal in its stderr."""
    subprocess.run(
        [java, "-Xmx256m", "-cp", f"{libs}/*", str(program), bootstrap, str(command_config)],
        input=binding_lines(bindings),
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )
