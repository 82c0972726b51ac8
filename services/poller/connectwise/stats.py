"""Request counters of one ConnectWise client (`ClientStats`) and their snapshots (`StatsSnapshot`)."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """Counters at one instant; subtract two snapshots to get one poll's numbers."""

    requests: int = 0
    throttled: int = 0
    retries: int = 0
    failures: int = 0
    codebase_refreshes: int = 0
    rate_limit_wait_seconds: float = 0.0

    def __sub__(self, other: StatsSnapshot) -> StatsSnapshot:
        return StatsSnapshot(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class ClientStats:
    """Mutable counters owned by one client (read them via `snapshot()`)."""

    def __init__(self) -> None:
        self.requests = 0
        self.throttled = 0
        self.retries = 0
        self.failures = 0
        self.codebase_refreshes = 0
        self.rate_limit_wait_seconds = 0.0

    def snapshot(self) -> StatsSnapshot:
        return StatsSnapshot(
            requests=self.requests,
            throttled=self.throttled,
            retries=self.retries,
            failures=self.failures,
            codebase_refreshes=self.codebase_refreshes,
            rate_limit_wait_seconds=self.rate_limit_wait_seconds,
        )

    def __repr__(self) -> str:
        return f"ClientStats({self.snapshot().as_dict()!r})"
