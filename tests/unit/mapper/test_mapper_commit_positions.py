"""The mapper app's own delivery rules around faust, with stand-ins for faust's consumer and
the output producer (no broker).

Checked here: commit an input partition up to the mapper's durable position when faust's commit
lags behind, never backwards; handle messages held during recovery without waiting for another
batch; retry a batch's produce until it lands before its position moves on durably. The real
worker runs in tests/integration/mapper/test_mapper_positions_worker.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from faust.types import TP
from mapper_factories import set_auto_sync, snapshot

from services.common.settings import KafkaSettings
from services.mapper import app as app_module
from services.mapper.app import MapperApp
from services.mapper.gap_reader import RawMessage
from services.mapper.output_producer import OutMessage
from services.mapper.settings import MapperSettings

AGREEMENTS = "psa.agreements.v1"
COMMANDS = "sync.commands.v1"


@dataclass
class FakeConsumer:
    """The three things the position check uses of faust's consumer."""

    assigned: set[TP]
    _committed_offset: dict[TP, int | None]
    commits: list[dict[TP, int]] = field(default_factory=list)

    def assignment(self) -> set[TP]:
        return self.assigned

    async def _commit_offsets(self, offsets: dict[TP, int]) -> bool:
        self.commits.append(dict(offsets))
        self._committed_offset.update(offsets)
        return True


@pytest.fixture
def mapper(tmp_path: Path) -> MapperApp:
    app = MapperApp(
        MapperSettings(app_id="unit-mapper", datadir=str(tmp_path), partitions=2),
        KafkaSettings(bootstrap_servers="127.0.0.1:1"),
    )
    app._recovered = lambda: True  # type: ignore[method-assign]
    return app


def _use(mapper: MapperApp, consumer: FakeConsumer) -> None:
    mapper.app.consumer = consumer  # type: ignore[assignment]


async def test_an_input_partition_is_committed_up_to_the_mappers_position_when_faust_lags(
    mapper: MapperApp,
) -> None:
    lagging, current = TP(AGREEMENTS, 0), TP(AGREEMENTS, 1)
    consumer = FakeConsumer({lagging, current}, {lagging: 1446, current: 5400})
    _use(mapper, consumer)
    mapper.store.put_position(AGREEMENTS, 0, 4700)
    mapper.store.put_position(AGREEMENTS, 1, 5400)

    await mapper._check_positions()

    assert consumer.commits == [{lagging: 4700}]
    assert consumer._committed_offset[lagging] == 4700


async def test_a_partition_is_never_committed_backwards_or_without_a_position(mapper: MapperApp) -> None:
    ahead, unknown, never = TP(AGREEMENTS, 0), TP(AGREEMENTS, 1), TP(COMMANDS, 0)
    consumer = FakeConsumer({ahead, unknown, never}, {ahead: 900, unknown: None, never: None})
    _use(mapper, consumer)
    mapper.store.put_position(AGREEMENTS, 0, 800)  # faust already committed beyond it

    await mapper._check_positions()

    assert consumer.commits == []


async def test_a_partition_no_longer_assigned_is_not_committed(mapper: MapperApp) -> None:
    kept = TP(AGREEMENTS, 0)
    consumer = FakeConsumer({kept}, {kept: 10})
    _use(mapper, consumer)
    mapper.store.put_position(AGREEMENTS, 0, 12)
    mapper.store.put_position(AGREEMENTS, 1, 99)  # revoked: another worker owns it now

    await mapper._check_positions()

    assert consumer.commits == [{kept: 12}]


async def test_nothing_is_committed_while_the_state_table_is_not_recovered(mapper: MapperApp) -> None:
    tp = TP(AGREEMENTS, 0)
    consumer = FakeConsumer({tp}, {tp: 1})
    _use(mapper, consumer)
    mapper.store.put_position(AGREEMENTS, 0, 50)
    mapper._recovered = lambda: False  # type: ignore[method-assign]

    await mapper._check_positions()

    assert consumer.commits == []


async def test_messages_held_during_recovery_are_handled_by_the_timer_without_a_next_batch(
    mapper: MapperApp,
) -> None:
    tp = TP(AGREEMENTS, 0)
    _use(mapper, FakeConsumer({tp}, {tp: None}))
    handled: list[list[tuple[str, int, int]]] = []

    async def record(messages: list[RawMessage]) -> None:
        handled.append([(m.topic, m.partition, m.offset) for m in messages])

    mapper._handle_messages = record  # type: ignore[method-assign]
    revoked = RawMessage(AGREEMENTS, 1, 0, b"k", b"v")
    mapper._held = [
        RawMessage(AGREEMENTS, 0, 4, b"k", b"v"),
        revoked,
        RawMessage(AGREEMENTS, 0, 3, b"k", b"v"),
    ]

    await mapper._check_positions()

    assert handled == [[(AGREEMENTS, 0, 3), (AGREEMENTS, 0, 4)]]
    assert mapper._held == []


def test_the_fake_consumer_offers_what_the_real_faust_consumer_offers() -> None:
    from faust.transport.consumer import Consumer

    wanted: list[Any] = ["assignment", "_commit_offsets"]
    assert all(callable(getattr(Consumer, name, None)) for name in wanted)


async def test_a_batch_whose_produce_fails_is_sent_again_until_it_lands_before_its_state(
    mapper: MapperApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "PRODUCE_RETRY_INITIAL_S", 0.01)
    monkeypatch.setattr(app_module, "PRODUCE_RETRY_MAX_S", 0.02)
    attempts: list[list[OutMessage]] = []

    async def broker_away_twice(messages: list[OutMessage]) -> dict[tuple[str, int], int]:
        attempts.append(list(messages))
        if len(attempts) <= 2:
            raise KafkaTimeoutError()
        return {}

    mapper.output.produce_all = broker_away_twice  # type: ignore[method-assign]

    await mapper._handle_messages([RawMessage(AGREEMENTS, 0, 0, b"t:c", b"not json")])

    outputs, state = attempts[0], attempts[3]
    assert len(attempts) == 4  # outputs: failed, failed, sent; then the state, once
    assert attempts[1] == outputs and attempts[2] == outputs  # the same messages, same event ids
    assert {m.topic for m in outputs} == {"sync.deadletter.v1"}  # unaddressable: no rejection event
    assert {m.topic for m in state} == {mapper.store.changelog_name}
    assert mapper.store.position(AGREEMENTS, 0) == 1


async def test_a_message_that_cannot_even_be_set_aside_is_raised_at_once_instead_of_stalling_the_worker(
    mapper: MapperApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "PRODUCE_RETRY_INITIAL_S", 0.01)
    attempts: list[int] = []
    resets: list[int] = []

    async def too_large(messages: list[OutMessage]) -> None:
        attempts.append(len(messages))
        raise MessageSizeTooLargeError()

    async def reset() -> None:
        resets.append(1)

    mapper.output.produce_all = too_large  # type: ignore[method-assign]
    mapper.output.reset = reset  # type: ignore[method-assign]

    mapper.store.put_position(AGREEMENTS, 0, 0)
    mapper.store.take_pending()
    mapper.store.keep()

    # Kafka refuses everything, the dead letter too: the batch once, then its `too_large` dead letter
    # once (tests/unit/mapper/test_mapper_too_large.py has the refusals that can be set aside)
    with pytest.raises(MessageSizeTooLargeError):
        await mapper._handle_messages([RawMessage(AGREEMENTS, 0, 0, b"t:c", b"not json")])
    assert attempts == [1, 1] and len(resets) == 2
    assert mapper.store.position(AGREEMENTS, 0) == 0  # not handled: read again later
    assert mapper.store.take_pending() == []


async def test_a_batch_cancelled_before_its_state_is_written_leaves_the_state_as_it_was(
    mapper: MapperApp,
) -> None:
    auto = set_auto_sync(True, tenant="t1")

    async def sent(messages: list[OutMessage]) -> dict[tuple[str, int], int]:
        return {}

    mapper.output.produce_all = sent  # type: ignore[method-assign]
    await mapper._handle_messages([RawMessage(COMMANDS, 0, 0, auto.key, auto.to_bytes())])
    before = dict(mapper.store.items())

    async def rebalance(messages: list[OutMessage]) -> None:
        raise asyncio.CancelledError()

    mapper.output.produce_all = rebalance  # type: ignore[method-assign]
    observed = snapshot(1, [11], tenant="t1")
    with pytest.raises(asyncio.CancelledError):
        await mapper._handle_messages([RawMessage(AGREEMENTS, 0, 0, observed.key, observed.to_bytes())])

    assert dict(mapper.store.items()) == before
    assert mapper.store.position(AGREEMENTS, 0) is None
    assert mapper.store.take_pending() == []
