"""The per-service Kafka ACLs are derived from the topic registry: each principal may do exactly
what `schemas.topics` says it does (issue 18, item 1)."""

from __future__ import annotations

import dataclasses

from schemas.topics import CONTRACT_RECORDS, PSA_AGREEMENTS, SYNC_COMMANDS, SYNC_EVENTS, TOPICS
from services.common.kafka_acls import (
    AclBinding,
    acl_bindings,
    cli_arguments,
    kafka_acls_commands,
    principal,
    strimzi_users,
)


def allowed(bindings: list[AclBinding], service: str, operation: str) -> set[str]:
    return {
        b.resource_name
        for b in bindings
        if b.principal == principal(service) and b.resource_type == "TOPIC" and b.operation == operation
    }


def test_every_producer_may_write_and_every_consumer_may_read_exactly_its_registry_topics() -> None:
    bindings = acl_bindings()
    for service in ("poller", "mapper", "writer", "gateway", "dashboard"):
        literal_writes = allowed(bindings, service, "WRITE") - {"contract-sync-mapper-"}
        literal_reads = allowed(bindings, service, "READ") - {"contract-sync-mapper-"}
        assert literal_writes == {t.name for t in TOPICS if service in t.producers}, service
        assert literal_reads == {t.name for t in TOPICS if service in t.consumers}, service


def test_the_gateway_cannot_write_contract_records_or_psa_agreements() -> None:
    writes = allowed(acl_bindings(), "gateway", "WRITE")
    assert writes == {SYNC_COMMANDS}
    assert CONTRACT_RECORDS not in writes and PSA_AGREEMENTS not in writes


def test_the_mapper_cannot_write_commands() -> None:
    assert SYNC_COMMANDS not in allowed(acl_bindings(), "mapper", "WRITE")


def test_the_dashboard_reads_sync_events_and_nothing_else() -> None:
    mine = [b for b in acl_bindings() if b.principal == principal("dashboard")]
    assert {(b.resource_type, b.resource_name, b.operation) for b in mine} == {
        ("TOPIC", SYNC_EVENTS, "READ"),
        ("TOPIC", SYNC_EVENTS, "DESCRIBE"),
        ("GROUP", "contract-sync-dashboard", "READ"),
        ("GROUP", "contract-sync-dashboard", "DESCRIBE"),
    }


def test_the_mapper_may_create_its_changelog_topics_under_its_app_id_prefix_only() -> None:
    creates = [b for b in acl_bindings() if b.operation == "CREATE"]
    assert creates == [
        AclBinding(principal("mapper"), "TOPIC", "contract-sync-mapper-", "PREFIXED", "CREATE")
    ]


def test_a_new_consumer_in_the_registry_is_granted_read_without_any_other_change() -> None:
    specs = [
        dataclasses.replace(t, consumers=(*t.consumers, "dashboard")) if t.name == CONTRACT_RECORDS else t
        for t in TOPICS
    ]
    assert CONTRACT_RECORDS in allowed(acl_bindings(specs), "dashboard", "READ")
    assert CONTRACT_RECORDS not in allowed(acl_bindings(), "dashboard", "READ")


def test_kafka_acls_commands_name_every_operation_of_a_resource_in_one_line() -> None:
    lines = kafka_acls_commands(acl_bindings(services=["gateway"]), "broker:9093", "admin.properties")
    assert (
        "kafka-acls.sh --bootstrap-server broker:9093 --command-config admin.properties --add "
        "--allow-principal User:contract-sync-gateway --operation Describe --operation Write "
        "--topic sync.commands.v1 --resource-pattern-type literal"
    ) in lines
    assert len(lines) == len(cli_arguments(acl_bindings(services=["gateway"]))) == 3


def test_strimzi_users_carry_the_same_acls_with_scram_authentication() -> None:
    users = strimzi_users(acl_bindings(), cluster="kc", namespace="kafka")
    assert [u["metadata"]["name"] for u in users] == [
        "contract-sync-dashboard",
        "contract-sync-gateway",
        "contract-sync-mapper",
        "contract-sync-poller",
        "contract-sync-writer",
    ]
    gateway = users[1]
    assert gateway["metadata"]["labels"] == {"strimzi.io/cluster": "kc"}
    assert gateway["spec"]["authentication"] == {"type": "scram-sha-512"}
    acls = gateway["spec"]["authorization"]["acls"]
    assert {
        "resource": {"type": "topic", "name": SYNC_COMMANDS, "patternType": "literal"},
        "operations": ["Write"],
        "host": "*",
    } in acls
    assert sum(len(a["operations"]) for a in acls) == len(
        [b for b in acl_bindings() if "gateway" in b.principal]
    )
