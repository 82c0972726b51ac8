"""What every consumer does when one message makes its per-message step fail (pure rules and a
small in-memory guard; no I/O).

Contract, shared by the poller's command intake, the mapper and the writer:
- any `Exception` raised while handling ONE message is that message's failure: the caller
  dead-letters it with `failure.reason` and `failure.error_class` and goes on with the next one;
- only cancellation (`asyncio.CancelledError`, `KeyboardInterrupt`, `SystemExit`: not
  `Exception`s) and the named environmental errors (`ENVIRONMENTAL`: the process or what it
  talks to is unwell, not the message) are let through, so the caller stops or pauses and retries;
- `PoisonGuard`: when a failure cannot be pinned on one message at once (a whole batch failed),
  the caller retries; a source position that fails a second time is dead-lettered and skipped,
  never retried forever.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiokafka.errors import KafkaError

from services.common.logging import redact

T = TypeVar("T")

ENVIRONMENTAL: tuple[type[BaseException], ...] = (MemoryError, OSError, KafkaError)
"""Errors that say the process or its surroundings are unwell (out of memory, a socket or file
error, the broker away): never blamed on the message being handled."""

INTERNAL_ERROR = "internal_error"
TOO_DEEPLY_NESTED = "too_deeply_nested"
MALFORMED_JSON = "malformed_json"
REASONS = (INTERNAL_ERROR, TOO_DEEPLY_NESTED, MALFORMED_JSON)
"""Every reason `failure_of` gives (part of `schemas.topics.DLQ_REASONS`)."""
_MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class MessageFailure:
    """Why one message could not be handled: a dead-letter reason, the exception's class name and
    a bounded, credential-free description."""

    reason: str
    error_class: str
    error: str


def failure_of(error: BaseException) -> MessageFailure:
    """The dead-letter reason for an exception raised by one message's step (pure).

    `RecursionError` (a JSON value nested deeper than a parser's recursion) is `too_deeply_nested`,
    a decoding error is `malformed_json`; anything else is `internal_error`."""
    if isinstance(error, RecursionError):
        reason = TOO_DEEPLY_NESTED
    elif isinstance(error, UnicodeDecodeError | json.JSONDecodeError):
        reason = MALFORMED_JSON
    else:
        reason = INTERNAL_ERROR
    # the message's own text is left out for nesting errors: it says nothing and may be long
    text = type(error).__name__ if reason == TOO_DEEPLY_NESTED else f"{type(error).__name__}: {error}"
    return MessageFailure(reason, type(error).__name__, redact(text)[:_MAX_ERROR_CHARS])


def is_environmental(error: BaseException, extra: tuple[type[BaseException], ...] = ()) -> bool:
    """True for cancellation and the environmental errors (`ENVIRONMENTAL` plus `extra`)."""
    return not isinstance(error, Exception) or isinstance(error, ENVIRONMENTAL + extra)


def guarded(
    step: Callable[[], T], *, environmental: tuple[type[BaseException], ...] = ()
) -> T | MessageFailure:
    """`step()`, or the `MessageFailure` of whatever non-environmental exception it raised."""
    try:
        return step()
    except Exception as error:
        if is_environmental(error, environmental):
            raise
        return failure_of(error)


async def guarded_async(
    step: Callable[[], Awaitable[T]], *, environmental: tuple[type[BaseException], ...] = ()
) -> T | MessageFailure:
    """`await step()`, or the `MessageFailure` of whatever non-environmental exception it raised."""
    try:
        return await step()
    except Exception as error:
        if is_environmental(error, environmental):
            raise
        return failure_of(error)


Position = tuple[str, int, int]
"""(topic, partition, offset) of a consumed message."""


class PoisonGuard:
    """Counts failures per source position (bounded: the oldest entries are forgotten first).

    `failed(position)` records one failure and returns True once that position has failed
    `limit` times (default 2): the caller then dead-letters the message and skips it."""

    def __init__(self, limit: int = 2, capacity: int = 10_000) -> None:
        self.limit = limit
        self.capacity = capacity
        self._failures: OrderedDict[Position, int] = OrderedDict()

    def failed(self, position: Position) -> bool:
        count = self._failures.pop(position, 0) + 1
        self._failures[position] = count
        while len(self._failures) > self.capacity:
            self._failures.popitem(last=False)
        return count >= self.limit

    def forget(self, position: Position) -> None:
        self._failures.pop(position, None)

    def failures(self, position: Position) -> int:
        return self._failures.get(position, 0)
