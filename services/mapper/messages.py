"""The mapper's messages: a consumed input and its parse, and the outputs a decision asks for.

`Incoming` is one consumed message, `parse_input` its parse; `Emit` produces an event,
`DeadLetter` dead-letters a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from schemas.envelope import CloudEvent
from schemas.fast import (
    ObservedEvent,
    decode_observed,
)
from schemas.topics import PSA_AGREEMENTS, parse

SOURCE: Final = "contract-sync/mapper"
STAGE_PARSE: Final = "mapper.parse"
STAGE_MAP: Final = "mapper.map"
STAGE_TENANT: Final = "mapper.tenant"
STAGE_PRODUCE: Final = "mapper.produce"


def parse_input(topic: str, raw: bytes) -> CloudEvent | ObservedEvent:
    """One input message: `psa.agreement.observed` through the compiled decoder
    (`schemas.fast.decode_observed`); whatever it declines, and every other type, through
    `schemas.topics.parse`, which raises `pydantic.ValidationError` / `ValueError` with its reasons.
    Both accept and reject the same messages with the same values (property tests)."""
    if topic == PSA_AGREEMENTS:
        fast = decode_observed(raw)
        if fast is not None:
            return fast
    return parse(topic, raw)


@dataclass(frozen=True)
class Incoming:
    """One consumed Kafka message; `topic` is the canonical name (`psa.agreements.v1`, ...)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    source_topic: str = ""
    """The topic's real name when a prefix is configured (named in dead-letter headers)."""

    @property
    def real_topic(self) -> str:
        return self.source_topic or self.topic


class Emit:
    """Produce one event to the canonical `topic`, keyed by its client.

    Built from a model (`Emit(topic, event)`) or, on the hot path, from its encoded bytes
    (`Emit.encoded`); either side is derived on first access (`value` serialises the model,
    `event` parses the bytes with `schemas.topics.parse`), so callers see the same thing.
    """

    __slots__ = ("_event", "_value", "key", "topic", "type")

    def __init__(self, topic: str, event: CloudEvent) -> None:
        self.topic = topic
        self.key: bytes = event.key
        self.type: str = event.type
        self._event: CloudEvent | None = event
        self._value: bytes | None = None

    @classmethod
    def encoded(cls, topic: str, *, key: bytes, type: str, value: bytes) -> Emit:
        emit = cls.__new__(cls)
        emit.topic, emit.key, emit.type = topic, key, type
        emit._event, emit._value = None, value
        return emit

    @property
    def event(self) -> CloudEvent:
        if self._event is None:
            assert self._value is not None
            self._event = parse(self.topic, self._value)
        return self._event

    @property
    def value(self) -> bytes:
        if self._value is None:
            assert self._event is not None
            self._value = self._event.to_bytes()
        return self._value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Emit) and (self.topic, self.event) == (other.topic, other.event)

    __hash__ = None  # type: ignore[assignment]  # mutable caches; compared by content

    def __repr__(self) -> str:
        return f"Emit({self.topic!r}, {self.type!r}, key={self.key!r})"


@dataclass(frozen=True)
class DeadLetter:
    """Produce `value` unchanged to `sync.deadletter.v1` with `headers` (schemas.topics.DLQ_*)."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    reason: str


Output = Emit | DeadLetter
