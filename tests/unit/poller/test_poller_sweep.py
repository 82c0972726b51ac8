from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from services.poller.sweep import due_for_sweep, expected_share, phase

PERIOD = timedelta(hours=24)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_phase_is_stable_and_inside_the_period() -> None:
    values = [phase(i, PERIOD) for i in range(1, 2000)]
    assert all(0 <= v < PERIOD.total_seconds() for v in values)
    assert phase(42, PERIOD) == phase(42, PERIOD)


def test_consecutive_runs_sweep_every_agreement_exactly_once_per_period() -> None:
    ids = list(range(1, 1001))
    seen: list[int] = []
    start = T0 + timedelta(seconds=7)
    step = timedelta(minutes=10)
    t = start
    while t < start + PERIOD:
        seen.extend(due_for_sweep(ids, t, t + step, PERIOD))
        t += step
    assert sorted(seen) == ids


def test_runs_with_irregular_gaps_still_cover_everything_once() -> None:
    ids = list(range(1, 501))
    boundaries = [T0]
    gaps = [13, 400, 3600, 7, 20000, 1, 62379]  # seconds, summing to exactly one day
    for gap in gaps:
        boundaries.append(boundaries[-1] + timedelta(seconds=gap))
    assert boundaries[-1] - T0 == PERIOD
    seen = [i for a, b in itertools.pairwise(boundaries) for i in due_for_sweep(ids, a, b, PERIOD)]
    assert sorted(seen) == ids


def test_share_per_run_is_about_n_times_interval_over_period() -> None:
    ids = list(range(1, 4_001))
    counts = [
        len(due_for_sweep(ids, T0 + timedelta(minutes=30 * k), T0 + timedelta(minutes=30 * (k + 1)), PERIOD))
        for k in range(48)
    ]
    assert sum(counts) == 4_000
    share = expected_share(4_000, timedelta(minutes=30), PERIOD)
    assert abs(sum(counts) / len(counts) - share) < 1
    assert max(counts) < 3 * share


def test_first_run_and_empty_interval_sweep_nothing() -> None:
    assert due_for_sweep([1, 2, 3], None, T0, PERIOD) == []
    assert due_for_sweep([1, 2, 3], T0, T0, PERIOD) == []


def test_a_gap_longer_than_the_period_sweeps_everything() -> None:
    assert due_for_sweep([3, 1, 2], T0, T0 + PERIOD + timedelta(seconds=1), PERIOD) == [1, 2, 3]
