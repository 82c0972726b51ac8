"""Retry policy: which answers are retried, and how long to wait (pure functions).

ConnectWise's own guidance (docs/connectwise.md#errors-and-retries): cancel on 400/401/403/404; exponential
backoff with jitter on transient faults (5xx, timeouts, connection errors); on 429 honour
`Retry-After`, else back off.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries. `max_attempts` counts the first try (5 → 1 try + 4 retries).

    Backoff for retry n (1-based) is drawn uniformly from `[d/2, d]` where
    `d = min(max_delay, initial_delay * 2 ** (n - 1))` ("equal jitter"): never zero, never above
    `max_delay`. A 429 waits `Retry-After` when given (capped at `max_retry_after`; a longer
    Retry-After is surfaced at once as `ConnectWiseThrottledError` instead of blocking the poller).
    """

    max_attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("delays must not be negative")

    def backoff(self, retry_number: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry `retry_number` (1 = first retry)."""
        ceiling = min(self.max_delay, self.initial_delay * (2 ** max(0, retry_number - 1)))
        return float(ceiling / 2 + rng() * ceiling / 2)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date); None if absent/invalid.

    Negative or past values give 0.0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return (
            max(0.0, float(text)) if text.replace(".", "", 1).lstrip("-").isdigit() else _from_date(text, now)
        )
    except (TypeError, ValueError, OverflowError):
        return None


def _from_date(text: str, now: datetime | None) -> float | None:
    when = parsedate_to_datetime(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())
