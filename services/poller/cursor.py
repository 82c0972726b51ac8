"""Watermark rules for incremental agreement reads (pure).

The watermark of a scope is the **start time of the previous successful run**, not the newest
`lastUpdated` seen. The next run asks for `lastUpdated >= [watermark - overlap]`, so windows overlap:

    run 1 starts 10:00:00, reads, all its events are acknowledged  -> watermark = 10:00:00
    an agreement is saved at 10:00:03 while run 1 is still paging  (run 1 may or may not see it)
    run 2 starts 10:00:30 and asks for lastUpdated >= [09:58:00]    -> it sees the 10:00:03 save

Why not the newest `lastUpdated` seen: a row committed late with an earlier timestamp, or stamped by a
server clock behind ours, would fall below it and be lost for good. The overlap absorbs clock skew
and commit lag; re-reading a row inside the overlap costs one row of a listing page and nothing more
(the snapshot digest shows it is unchanged, so its additions are not re-read and nothing is emitted).

A watermark only moves forward, and only after the whole run succeeded and every event of it was
acknowledged by Kafka; a failed or abandoned run leaves it where it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from services.poller.connectwise import conditions as cond

# scope names in poller_cursors
SCOPE_ALL = "incremental:all"
SCOPE_AUTO = "incremental:auto"
SCOPE_SWEEP = "sweep"
SCOPE_RECONCILE = "reconcile"
SCOPE_AUTO_SYNC = "auto_sync"

# ids per `company/id in (...)`: keeps the URL well under ConnectWise's ~2,000 character advice
MAX_IDS_PER_CONDITION = 150


def window_start(watermark: datetime | None, overlap: timedelta) -> datetime | None:
    """The lower bound of the next incremental read; None means a full read (no watermark yet)."""
    if watermark is None:
        return None
    return watermark - overlap


def advance(previous: datetime | None, run_started_at: datetime) -> datetime:
    """The watermark after a successful run that started at `run_started_at` (never moves back)."""
    if previous is not None and previous > run_started_at:
        return previous
    return run_started_at


def batched(ids: Sequence[int], size: int = MAX_IDS_PER_CONDITION) -> list[tuple[int, ...]]:
    if size < 1:
        raise ValueError("batch size must be positive")
    ordered = sorted(set(ids))
    return [tuple(ordered[i : i + size]) for i in range(0, len(ordered), size)]


def company_filters(company_ids: Sequence[int] | None) -> list[cond.Condition | None]:
    """One filter per request: `[None]` for all companies, else `company/id in (...)` batches."""
    if company_ids is None:
        return [None]
    return [cond.in_("company/id", list(batch)) for batch in batched(company_ids)]


def incremental_conditions(
    since: datetime | None, company_ids: Sequence[int] | None
) -> list[cond.Condition | None]:
    """The `conditions` of each listing request of an incremental read (`[None]`: everything)."""
    changed = cond.ge("lastUpdated", since) if since is not None else None
    result: list[cond.Condition | None] = []
    for company in company_filters(company_ids):
        if company is None:
            result.append(changed)
        elif changed is None:
            result.append(company)
        else:
            result.append(company & changed)
    return result
