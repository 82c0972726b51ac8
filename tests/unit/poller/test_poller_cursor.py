from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.poller.cursor import advance, batched, company_filters, incremental_conditions, window_start

T0 = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)


def test_no_watermark_means_a_full_read() -> None:
    assert window_start(None, timedelta(minutes=2)) is None
    assert incremental_conditions(None, None) == [None]


def test_window_starts_overlap_before_the_previous_run_start() -> None:
    assert window_start(T0, timedelta(minutes=2)) == T0 - timedelta(minutes=2)


def test_watermark_is_the_run_start_and_never_moves_back() -> None:
    assert advance(None, T0) == T0
    assert advance(T0, T0 + timedelta(seconds=30)) == T0 + timedelta(seconds=30)
    assert advance(T0 + timedelta(hours=1), T0) == T0 + timedelta(hours=1)


def test_incremental_condition_uses_greater_or_equal_on_last_updated() -> None:
    [condition] = incremental_conditions(T0, None)
    assert str(condition) == "lastUpdated >= [2026-03-01T10:00:00Z]"


def test_client_lists_become_batched_company_filters_combined_with_the_window() -> None:
    ids = list(range(1, 302))
    conditions = incremental_conditions(T0, ids)
    assert len(conditions) == 3
    first = str(conditions[0])
    assert first.startswith("company/id in (1, 2, 3")
    assert first.endswith("and lastUpdated >= [2026-03-01T10:00:00Z]")
    assert all(len(str(c)) < 2000 for c in conditions)
    assert [str(c) for c in company_filters([5, 3, 5])] == ["company/id in (3, 5)"]


def test_batches_cover_every_id_once() -> None:
    batches = batched([3, 1, 2, 3, 9], size=2)
    assert batches == [(1, 2), (3, 9)]
