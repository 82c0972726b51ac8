"""Malformed commands: every command whose tenant can be read is answered with `sync.command.rejected`
(reason `malformed`, the failed fields' paths) besides being dead-lettered; a message lacking a
required envelope attribute (`id`, `specversion`, `time`) is never acted on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mapper_factories import CLIENT, TENANT, select, set_auto_sync, snapshot

from schemas.events import CommandRejected, SyncFailed
from schemas.records import ContractRecordMapped
from schemas.topics import DLQ_REASON, PSA_AGREEMENTS, SYNC_COMMANDS, SYNC_EVENTS
from services.mapper.messages import DeadLetter, Emit, Incoming, Output
from services.mapper.state import handle

KEY = f"{TENANT}:{CLIENT}".encode()


def consume(store: dict[str, bytes], topic: str, value: bytes, key: bytes | None = KEY) -> list[Output]:
    return handle(store, Incoming(topic=topic, partition=0, offset=7, key=key, value=value))


def rejections(outputs: list[Output]) -> list[CommandRejected]:
    found = [o for o in outputs if isinstance(o, Emit) and isinstance(o.event, CommandRejected)]
    assert all(o.topic == SYNC_EVENTS for o in found)
    return [o.event for o in found]  # type: ignore[misc]


def dlq_reasons(outputs: list[Output]) -> list[str]:
    return [dict(o.headers)[DLQ_REASON].decode() for o in outputs if isinstance(o, DeadLetter)]


def select_document(**data: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(select([1]).to_bytes())
    document["data"].update(data)
    return document


def test_a_command_with_a_numeric_client_id_is_rejected_as_malformed_naming_the_field() -> None:
    document = select_document(client_id=int(CLIENT))
    outputs = consume({}, SYNC_COMMANDS, json.dumps(document).encode())
    assert dlq_reasons(outputs) == ["validation_error"]
    (rejected,) = rejections(outputs)
    assert rejected.data.reason == "malformed"
    assert rejected.data.error_paths == ["data.client_id"]
    assert rejected.data.command_id == document["id"] and rejected.correlationid == document["id"]
    assert rejected.data.command_type == "sync.command.select"
    assert (rejected.data.tenant_id, rejected.data.client_id) == (TENANT, CLIENT)  # from the subject
    assert rejected.subject == f"{TENANT}:{CLIENT}"


def test_a_command_with_a_numeric_tenant_id_in_data_is_answered_to_the_envelope_tenant() -> None:
    document = select_document(tenant_id=42)
    (rejected,) = rejections(consume({}, SYNC_COMMANDS, json.dumps(document).encode()))
    assert rejected.data.reason == "malformed"
    assert "data.tenant_id" in rejected.data.error_paths
    assert (rejected.data.tenant_id, rejected.data.client_id) == (TENANT, CLIENT)


def test_a_command_whose_client_cannot_be_read_is_answered_tenant_wide() -> None:
    document = select_document(client_id=["not", "an", "id"])
    document["subject"] = "garbage"
    outputs = consume({}, SYNC_COMMANDS, json.dumps(document).encode(), key=b"garbage")
    assert dlq_reasons(outputs) == ["validation_error"]
    (rejected,) = rejections(outputs)
    assert rejected.data.reason == "malformed"
    assert (rejected.data.tenant_id, rejected.data.client_id) == (TENANT, "*")
    assert "data.client_id" in rejected.data.error_paths


def test_a_command_naming_no_readable_tenant_is_only_dead_lettered() -> None:
    document = select_document(tenant_id=7)
    document["tenantid"] = "NOT A TENANT"
    document["subject"] = "garbage"
    outputs = consume({}, SYNC_COMMANDS, json.dumps(document).encode(), key=None)
    assert dlq_reasons(outputs) == ["validation_error"]
    assert rejections(outputs) == []


@pytest.mark.parametrize("attribute", ["id", "specversion", "time"])
def test_a_command_lacking_a_required_envelope_attribute_is_dead_lettered_rejected_and_not_applied(
    attribute: str,
) -> None:
    store: dict[str, bytes] = {}
    consume(store, PSA_AGREEMENTS, snapshot(1, []).to_bytes())
    before = dict(store)
    document = json.loads(set_auto_sync(True).to_bytes())
    del document[attribute]
    outputs = consume(store, SYNC_COMMANDS, json.dumps(document).encode())
    assert dlq_reasons(outputs) == ["validation_error"]
    (rejected,) = rejections(outputs)
    assert rejected.data.reason == "malformed" and rejected.data.error_paths == [attribute]
    assert not [o for o in outputs if isinstance(o, Emit) and isinstance(o.event, ContractRecordMapped)]
    assert store == before, "auto-sync stays off: the command was not acted on"


def test_a_psa_event_without_an_id_is_dead_lettered_and_reported_not_mapped() -> None:
    store: dict[str, bytes] = {}
    consume(store, SYNC_COMMANDS, set_auto_sync(True).to_bytes())
    document = json.loads(snapshot(1, []).to_bytes())
    del document["id"]
    outputs = consume(store, PSA_AGREEMENTS, json.dumps(document).encode())
    assert dlq_reasons(outputs) == ["validation_error"]
    assert [o.event.type for o in outputs if isinstance(o, Emit)] == [SyncFailed.model_fields["type"].default]
