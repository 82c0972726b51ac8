"""The shared per-message failure rules (services/common/poison.py) and the fallback parse every
service uses to address a bad message (services/common/kafka.py `recover_client`)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError

from services.common.kafka import deadletter_headers, recover_client
from services.common.poison import (
    INTERNAL_ERROR,
    TOO_DEEPLY_NESTED,
    MessageFailure,
    PoisonGuard,
    failure_of,
    guarded,
    guarded_async,
)


def nested(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return b'{"data":' + opener * depth + closer * depth + b"}"


@pytest.mark.parametrize("depth", [1_000, 4_000, 100_000])
def test_recover_client_never_raises_on_deeply_nested_json(depth: int) -> None:
    assert recover_client(nested(depth)) is None
    assert recover_client(b'{"data":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}") is None


@pytest.mark.parametrize(
    "raw",
    [b'{"tenantid":"\xff\xfe"}', b'{"data":{"tenant_id":1e999999}}', b"\x00\x01", b'"just a string"', b"[]"],
)
def test_recover_client_returns_none_for_unreadable_bytes(raw: bytes) -> None:
    assert recover_client(raw) is None


def test_recover_client_takes_the_last_of_duplicate_keys_like_every_parser() -> None:
    raw = b'{"tenantid":"evil","subject":"evil:1","tenantid":"acme","data":{"client_id":"7"}}'
    assert recover_client(raw) == ("acme", "7", None, None)


def test_a_recursion_error_is_named_too_deeply_nested_and_anything_else_internal_error() -> None:
    deep = failure_of(RecursionError("maximum recursion depth exceeded"))
    assert (deep.reason, deep.error_class) == (TOO_DEEPLY_NESTED, "RecursionError")
    other = failure_of(KeyError("x"))
    assert (other.reason, other.error_class) == (INTERNAL_ERROR, "KeyError")


def test_guarded_turns_any_exception_of_a_step_into_a_failure_but_lets_environmental_errors_through() -> None:
    def boom() -> int:
        raise ZeroDivisionError("x")

    assert isinstance(guarded(boom), MessageFailure)
    assert guarded(lambda: 3) == 3

    def broker_away() -> int:
        raise KafkaConnectionError("away")

    with pytest.raises(KafkaConnectionError):
        guarded(broker_away)
    with pytest.raises(MemoryError):
        guarded(lambda: (_ for _ in ()).throw(MemoryError()))


async def test_guarded_async_lets_cancellation_through() -> None:
    async def cancelled() -> int:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await guarded_async(cancelled)

    async def bad() -> int:
        raise ValueError("bad")

    failure = await guarded_async(bad)
    assert isinstance(failure, MessageFailure) and failure.error_class == "ValueError"


def test_the_same_position_failing_twice_is_given_up_and_others_are_not() -> None:
    guard = PoisonGuard()
    assert guard.failed(("t", 0, 5)) is False
    assert guard.failed(("t", 0, 6)) is False
    assert guard.failed(("t", 0, 5)) is True


def test_the_guard_forgets_the_oldest_positions_beyond_its_capacity() -> None:
    guard = PoisonGuard(capacity=2)
    for offset in range(3):
        guard.failed(("t", 0, offset))
    assert guard.failures(("t", 0, 0)) == 0
    assert guard.failures(("t", 0, 2)) == 1


def test_dead_letter_headers_name_the_error_class() -> None:
    headers = dict(
        deadletter_headers(
            reason="too_deeply_nested",
            error="RecursionError",
            stage="writer.apply",
            topic="t",
            partition=0,
            offset=1,
            error_class="RecursionError",
        )
    )
    assert headers["cs-dlq-error-class"] == b"RecursionError"
