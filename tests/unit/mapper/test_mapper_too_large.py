"""A permanent size refusal by Kafka is pinned on the message that caused it (`services.mapper.app`):
that message is dead-lettered (`too_large`) and answered, the rest of its batch is handled, and its
partition goes on, instead of the batch being retried forever. Any other permanent produce error is
still raised (the operator's to fix), with nothing dead-lettered."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from aiokafka.errors import MessageSizeTooLargeError, OutOfOrderSequenceNumber, TopicAuthorizationFailedError
from mapper_factories import CLIENT, TENANT, set_auto_sync, snapshot

from schemas.topics import DEADLETTER, DLQ_REASON, DLQ_STAGE, PSA_AGREEMENTS, SYNC_COMMANDS, SYNC_EVENTS
from services.common.settings import KafkaSettings
from services.mapper.app import MapperApp
from services.mapper.gap_reader import RawMessage
from services.mapper.output_producer import OutMessage
from services.mapper.settings import MapperSettings

LIMIT = 1_000_000
"""What the fake broker accepts per record: like a topic's default `max.message.bytes`."""
LIMITS = {DEADLETTER: 8_388_608}
"""Topics with a larger limit (schemas.topics: the dead-letter topic's)."""


class Broker:
    """Records every message the mapper produced; refuses a produce call that holds a record
    over its topic's limit (as Kafka refuses the record batch), or every call once `deny` is set."""

    def __init__(self) -> None:
        self.written: list[OutMessage] = []
        self.refused = 0
        self.deny: Exception | None = None
        self.lost_sequence = False
        self.resets = 0

    async def produce_all(self, messages: list[OutMessage]) -> dict[tuple[str, int], int]:
        if self.deny is not None:
            raise self.deny
        if self.lost_sequence:  # an idempotent producer after a refused batch, until replaced
            raise OutOfOrderSequenceNumber()
        if any(len(m.value or b"") > LIMITS.get(m.topic, LIMIT) for m in messages):
            self.refused += 1
            self.lost_sequence = True
            raise MessageSizeTooLargeError("the request included a message larger than the max message size")
        self.written.extend(messages)
        return {}  # no changelog offsets: the unit store keeps no checkpoint

    async def reset(self) -> None:
        self.resets += 1
        self.lost_sequence = False

    def on(self, topic: str) -> list[OutMessage]:
        return [m for m in self.written if m.topic == topic]


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
def mapper(tmp_path: Path, broker: Broker) -> MapperApp:
    app = MapperApp(
        MapperSettings(app_id="unit-mapper-too-large", datadir=str(tmp_path), partitions=1),
        KafkaSettings(bootstrap_servers="127.0.0.1:1"),
    )
    app._recovered = lambda: True  # type: ignore[method-assign]
    app.output.produce_all = broker.produce_all  # type: ignore[method-assign]
    app.output.reset = broker.reset  # type: ignore[method-assign]
    return app


def raw(offset: int, agreement_id: int, padding: int = 0) -> RawMessage:
    """Agreement `agreement_id` of client acme:250; `padding` bytes of a ConnectWise field the
    mapping does not read (kept in the state's copy of the snapshot, not in the records)."""
    extra = {"customFields": [{"id": 1, "value": "x" * padding}]} if padding else {}
    event = snapshot(agreement_id, [agreement_id * 10 + 1], **extra)
    return RawMessage(PSA_AGREEMENTS, 0, offset, event.key, event.to_bytes())


async def test_a_snapshot_too_big_for_the_state_changelog_is_set_aside_and_the_batch_goes_on(
    mapper: MapperApp, broker: Broker
) -> None:
    command = set_auto_sync(True)
    await mapper._handle_messages([RawMessage(SYNC_COMMANDS, 0, 0, command.key, command.to_bytes())])
    big = raw(1, 2, padding=1_500_000)
    assert len(big.value or b"") > LIMIT

    await mapper._handle_messages([raw(0, 1), big, raw(2, 3)])  # returns: no retry loop

    assert broker.refused >= 1 and broker.resets == broker.refused  # a new producer after each refusal
    (dead,) = broker.on(DEADLETTER)
    headers = dict(dead.headers)
    assert headers[DLQ_REASON] == b"too_large" and headers[DLQ_STAGE] == b"mapper.produce"
    assert dead.value == big.value and dead.key == big.key
    events = [orjson.loads(m.value or b"") for m in broker.on(SYNC_EVENTS)]
    failed = [e for e in events if e["type"] == "sync.failed"]
    assert [e["data"]["error_code"] for e in failed] == ["too_large"]
    assert failed[0]["data"]["tenant_id"] == TENANT and failed[0]["data"]["client_id"] == CLIENT
    mapped = {orjson.loads(m.value or b"")["data"]["contract_key"] for m in broker.on("contracts.records.v1")}
    assert {f"cw:{TENANT}:agreement:1", f"cw:{TENANT}:agreement:3"} <= mapped  # its neighbours mapped
    client = f"{TENANT}:{CLIENT}"
    assert mapper.store.index.agreements(client) == [1, 3]  # the refused snapshot left no state
    assert mapper.store.position(PSA_AGREEMENTS, 0) == 3  # the partition moved past it

    await mapper._handle_messages([raw(3, 4)])  # and goes on
    assert mapper.store.position(PSA_AGREEMENTS, 0) == 4


async def test_a_single_refused_message_is_set_aside_without_being_decided_again(
    mapper: MapperApp, broker: Broker
) -> None:
    await mapper._handle_messages([raw(0, 1, padding=1_200_000)])

    assert broker.refused == 1
    assert [dict(m.headers)[DLQ_REASON] for m in broker.on(DEADLETTER)] == [b"too_large"]
    assert mapper.store.position(PSA_AGREEMENTS, 0) == 1


async def test_any_other_permanent_produce_error_is_raised_and_nothing_is_dead_lettered(
    mapper: MapperApp, broker: Broker
) -> None:
    broker.deny = TopicAuthorizationFailedError()

    with pytest.raises(TopicAuthorizationFailedError):
        await mapper._handle_messages([raw(0, 1), raw(1, 2)])

    assert broker.written == []
    assert mapper.store.position(PSA_AGREEMENTS, 0) is None  # undone: read again once fixed
    broker.deny = None
    await mapper._handle_messages([raw(0, 1), raw(1, 2)])
    assert mapper.store.position(PSA_AGREEMENTS, 0) == 2 and broker.on(DEADLETTER) == []


async def test_a_producer_that_lost_its_sequence_is_replaced_and_the_batch_retried(
    mapper: MapperApp, broker: Broker
) -> None:
    broker.lost_sequence = True

    await mapper._handle_messages([raw(0, 1)])

    assert broker.resets == 1 and broker.on(DEADLETTER) == []
    assert mapper.store.position(PSA_AGREEMENTS, 0) == 1
