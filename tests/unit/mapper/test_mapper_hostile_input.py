"""The mapper's decision step on hostile input (issue classes of docs/chaos.md): deeply nested JSON,
invalid UTF-8, huge numbers and null Kafka keys are dead-lettered with a reason; nothing raises."""

from __future__ import annotations

import pytest
from mapper_factories import select, set_auto_sync

from schemas.events import CommandRejected, SyncFailed
from schemas.topics import DLQ_REASON, PSA_AGREEMENTS, SYNC_COMMANDS
from services.mapper.messages import DeadLetter, Emit, Incoming
from services.mapper.state import decide


def run(topic: str, value: bytes, key: bytes | None) -> list[object]:
    return decide({}, Incoming(topic=topic, partition=0, offset=7, key=key, value=value)).outputs


def reasons(outputs: list[object]) -> list[str]:
    return [dict(o.headers)[DLQ_REASON].decode() for o in outputs if isinstance(o, DeadLetter)]


@pytest.mark.parametrize("topic", [PSA_AGREEMENTS, SYNC_COMMANDS])
@pytest.mark.parametrize("depth", [4_000, 100_000])
def test_deeply_nested_json_is_dead_lettered_without_raising(topic: str, depth: int) -> None:
    raw = b'{"tenantid":"acme","data":' + b"[" * depth + b"]" * depth + b"}"
    assert reasons(run(topic, raw, b"acme:250")) == ["malformed_json"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"specversion":"1.0","type":"sync.command.select","data":{"tenant_id":"\xff\xfe"}}',
        b'{"specversion":"1.0","type":"sync.command.select","data":{"agreement_ids":[1e999999]}}',
    ],
)
def test_invalid_utf8_and_huge_numbers_are_dead_lettered(raw: bytes) -> None:
    assert reasons(run(SYNC_COMMANDS, raw, b"acme:250")) != []


def test_a_command_without_a_kafka_key_is_dead_lettered_as_key_mismatch_and_answered() -> None:
    command = set_auto_sync(True)
    store: dict[str, bytes] = {}
    outputs = decide(
        store, Incoming(topic=SYNC_COMMANDS, partition=0, offset=1, key=None, value=command.to_bytes())
    ).outputs
    assert reasons(outputs) == ["key_mismatch"]
    rejected = [o.event for o in outputs if isinstance(o, Emit) and isinstance(o.event, CommandRejected)]
    assert [r.data.command_id for r in rejected] == [str(command.id)]
    assert store == {}  # the flag was not set


def test_a_select_without_a_kafka_key_changes_nothing() -> None:
    outputs = run(SYNC_COMMANDS, select([1]).to_bytes(), None)
    assert reasons(outputs) == ["key_mismatch"]


def test_a_psa_event_without_a_kafka_key_is_dead_lettered_and_reported() -> None:
    from mapper_factories import cw_agreement, observed

    outputs = run(PSA_AGREEMENTS, observed(cw_agreement(id=1), []).to_bytes(), None)
    assert reasons(outputs) == ["key_mismatch"]
    assert any(isinstance(o, Emit) and isinstance(o.event, SyncFailed) for o in outputs)
