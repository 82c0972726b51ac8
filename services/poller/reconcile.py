"""The removal guards (pure): the listing check of a reconcile or refresh, and the removal budget
every path that removes an agreement goes through.

A reconcile lists every agreement id in scope (`fields=id`) and compares it with the agreements
the poller has emitted. An id that disappeared is only a *candidate*: it is removed only if a
direct GET answers 404. Before any GET, the guard refuses the whole reconcile when the listing
looks wrong:

- empty while we know agreements (an unauthorised or misconfigured member sees nothing);
- would remove more than `max_ratio` (default 20 %) of the known agreements, unless the number
  of candidates is at most `floor` (so a tenant with 3 agreements can still lose one).

A refused reconcile removes nothing and raises `sync.failed`; the next one tries again.

    known 1,000, listed 990  -> 10 candidates (1 %)   -> confirm each by GET
    known 1,000, listed 700  -> 300 candidates (30 %) -> refused: "would remove 300 of 1000 (30.0 %)"
    known 1,000, listed 0    -> refused: "the listing is empty"
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RemovalGuard:
    max_ratio: float = 0.2
    floor: int = 2


@dataclass(frozen=True, slots=True)
class ReconcilePlan:
    """Candidates to confirm by GET, or the reason the reconcile was refused (then no candidates)."""

    candidates: tuple[int, ...]
    refused: str | None = None

    @property
    def ok(self) -> bool:
        return self.refused is None


def plan_removals(known: Collection[int], listed: Collection[int], guard: RemovalGuard) -> ReconcilePlan:
    """The agreements to confirm as removed, or a refusal when the listing is suspicious."""
    known_set = set(known)
    listed_set = set(listed)
    candidates = tuple(sorted(known_set - listed_set))
    if not candidates:
        return ReconcilePlan(())
    if not listed_set:
        return ReconcilePlan(
            (),
            f"the listing is empty while {len(known_set)} agreement(s) are known: "
            "refusing to treat an empty or unauthorised answer as deletions",
        )
    ratio = len(candidates) / len(known_set)
    if len(candidates) > guard.floor and ratio > guard.max_ratio:
        return ReconcilePlan(
            (),
            f"would remove {len(candidates)} of {len(known_set)} agreements ({ratio:.1%}), "
            f"more than the {guard.max_ratio:.0%} guard",
        )
    return ReconcilePlan(candidates)


class RemovalBudget:
    """How many agreement removals the poller may emit: per run and per tenant over `window`.

    Both limits are `max(floor, max_ratio * known)` (the `RemovalGuard` knobs; `known` = the
    agreements the poller knows for the tenant). Every path that removes an agreement (incremental
    read, sweep, refresh, reconcile, callback) asks `take` first; a refused removal is held (not
    emitted, the agreement stays known, so a later run confirms it again) and the run raises
    `sync.failed` (`removal_guard`). The tenant's window lives in memory (a restart starts it afresh).

        known 1,000 -> 200 per run, 200 per window; known 12 -> 2 and 2
    """

    def __init__(self, guard: RemovalGuard, window: timedelta = timedelta(hours=1)) -> None:
        self.guard = guard
        self.window = window
        self._taken: deque[datetime] = deque()

    def allowance(self, known: int) -> int:
        return max(self.guard.floor, int(self.guard.max_ratio * known))

    def take(self, now: datetime, known: int, this_run: int) -> str | None:
        """None when one more removal is allowed (and counted), else why it is held."""
        while self._taken and now - self._taken[0] >= self.window:
            self._taken.popleft()
        limit = self.allowance(known)
        if this_run >= limit:
            return f"this run already removed {this_run} of {known} known agreements (budget {limit} per run)"
        if len(self._taken) >= limit:
            return (
                f"{len(self._taken)} agreements of {known} were removed within {self.window} "
                f"(budget {limit} per tenant and window)"
            )
        self._taken.append(now)
        return None
