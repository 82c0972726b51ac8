"""The mapper's own input positions: which source offsets its state already reflects.

Why: faust's fetcher can drop input messages around table recovery and seeks (its drain loop
advances its read offset for a message whose delivery was cancelled by flow control, then
drops the re-fetched copy as "already read"), and it can mark such offsets as a "gap" that
counts as acknowledged. The consumer group's committed offset therefore does not prove that a
message was handled. The mapper keeps, per source partition, the next offset it has to handle
in its own state table (changelog-backed, written only after the outputs of everything before
it are durably produced) and checks every delivered message against it:

- `PROCESS`  - the expected offset (or the first one seen for a partition with no position):
  handle it, then advance;
- `DUPLICATE` - below the position: its effects are already in the state and its outputs were
  produced; skip it (exactly-once effects in the mapper's state across restarts);
- `GAP` - above the position: messages in between were never handled; the caller reads that
  range again itself (a group-less consumer, not faust's fetcher, whose drop logic can discard
  re-fetched messages after a seek) and handles it before this one.

When the missing messages no longer exist (retention deleted them while the mapper was down),
the caller moves the position up to the partition's earliest offset and logs the lost range
as an error, so the mapper never waits for a gap it cannot fill.

Pure: no faust, no Kafka. The position value is the offset as ASCII digits.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

POSITION_PREFIX: Final = "~pos|"


class Verdict(Enum):
    PROCESS = "process"
    DUPLICATE = "duplicate"
    GAP = "gap"


def position_key(topic: str, partition: int) -> str:
    """The state-table key of a source partition's position (never starts with a client key)."""
    return f"{POSITION_PREFIX}{topic}|{partition}"


def encode_position(offset: int) -> bytes:
    return str(offset).encode()


def decode_position(raw: bytes | None) -> int | None:
    return int(raw) if raw else None


def classify(position: int | None, offset: int) -> Verdict:
    """What to do with a delivered message at `offset` of a partition whose state expects
    `position` next (None: nothing stored yet, the first delivered message defines it)."""
    if position is None or offset == position:
        return Verdict.PROCESS
    return Verdict.DUPLICATE if offset < position else Verdict.GAP
