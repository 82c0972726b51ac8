"""One poll run's working set (`PollRun`): its kind, counters (`RunStats`), emitter and correlation id."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from services.poller.connectwise import StatsSnapshot
from services.poller.emitter import Emitter

RunKind = Literal["incremental", "refresh", "reconcile", "callback"]
Json = dict[str, Any]


@dataclass
class RunStats:
    """What one run did; becomes `sync.poll.completed`."""

    kind: RunKind
    started_at: datetime
    seen: int = 0
    changed: int = 0
    agreements_removed: int = 0
    additions_removed: int = 0
    snapshots_read: int = 0
    swept: int = 0
    invalid: int = 0
    clients: set[str] = field(default_factory=set)
    requests: int = 0
    throttled: int = 0
    retries: int = 0
    duration_ms: int = 0
    invalid_ids: list[int] = field(default_factory=list)
    removals_held: dict[int, str] = field(default_factory=dict)
    """Agreements proven gone whose removal the budget held back -> why."""
    client_before: StatsSnapshot | None = None
    clock_before: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "started_at": self.started_at.isoformat(),
            "seen": self.seen,
            "changed": self.changed,
            "agreements_removed": self.agreements_removed,
            "additions_removed": self.additions_removed,
            "snapshots_read": self.snapshots_read,
            "swept": self.swept,
            "requests": self.requests,
            "duration_ms": self.duration_ms,
        }


@dataclass
class PollRun:
    """Everything the steps of one run share: what they count (`stats`), where their events go
    (`emitter`: recorded only once Kafka acknowledged them) and the correlation id their events
    carry (the refresh command's id, else None). One per run; never shared between runs."""

    stats: RunStats
    emitter: Emitter
    correlationid: str | None = None

    @property
    def kind(self) -> RunKind:
        return self.stats.kind


def row_id(row: Json) -> int | None:
    """The positive integer `id` of a ConnectWise row, else None (dirty data is skipped, not fatal)."""
    value = row.get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
