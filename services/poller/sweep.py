"""Rolling additions sweep: which agreements' additions to re-read in a run (pure).

ConnectWise has no cross-agreement additions endpoint, and an addition edit need not touch its
agreement's `lastUpdated`, so every known agreement's additions are re-read at least once per
`period` (default 24 h), spread evenly over the runs.

Each agreement has a fixed *phase* in the period, derived from a stable hash of its id. A run that
covers the wall-clock interval `(since, until]` sweeps every agreement whose phase point falls in it
(modulo the period). Consecutive runs cover consecutive intervals, so each agreement is swept once
per period whatever the run cadence; a gap longer than the period (the poller was down) sweeps all.

    period 24 h, runs every 30 s  -> each run sweeps ~ n * 30 / 86,400 agreements
    agreement 42 has phase 13:05:10 -> swept by the run whose interval contains 13:05:10 each day
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta


def phase(agreement_id: int, period: timedelta) -> float:
    """Seconds into the period at which `agreement_id` is due (stable, uniform in [0, period))."""
    digest = hashlib.blake2b(str(agreement_id).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") / 2**64) * period.total_seconds()


def due_for_sweep(
    agreement_ids: Iterable[int], since: datetime | None, until: datetime, period: timedelta
) -> list[int]:
    """The agreements whose phase point lies in `(since, until]` (sorted).

    `since` None (no sweep yet) sweeps nothing: the run that creates the cursor has just read
    everything it knows. `until <= since` sweeps nothing.
    """
    seconds = period.total_seconds()
    if seconds <= 0:
        raise ValueError("sweep period must be positive")
    if since is None or until <= since:
        return []
    ids = sorted(set(agreement_ids))
    if (until - since).total_seconds() >= seconds:
        return ids
    start = since.timestamp() % seconds
    end = until.timestamp() % seconds
    due = []
    for agreement_id in ids:
        point = phase(agreement_id, period)
        if (start < point <= end) if start <= end else (point > start or point <= end):
            due.append(agreement_id)
    return due


def expected_share(known: int, interval: timedelta, period: timedelta) -> float:
    """The average number of agreements a run covering `interval` sweeps."""
    return known * min(1.0, interval.total_seconds() / period.total_seconds())
