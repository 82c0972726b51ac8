from __future__ import annotations

from services.poller.reconcile import RemovalGuard, plan_removals

GUARD = RemovalGuard(max_ratio=0.2, floor=2)


def test_missing_ids_are_candidates_for_confirmation() -> None:
    plan = plan_removals(range(1, 101), [i for i in range(1, 101) if i not in (7, 50)], GUARD)
    assert plan.ok and plan.candidates == (7, 50)


def test_nothing_missing_plans_nothing() -> None:
    plan = plan_removals([1, 2], [1, 2, 3], GUARD)
    assert plan.ok and plan.candidates == ()


def test_an_empty_listing_removes_nothing() -> None:
    plan = plan_removals(range(1, 11), [], GUARD)
    assert not plan.ok and plan.candidates == ()
    assert plan.refused is not None and "empty" in plan.refused


def test_a_listing_that_would_remove_more_than_the_ratio_is_refused() -> None:
    plan = plan_removals(range(1, 1001), range(1, 701), GUARD)
    assert not plan.ok and plan.candidates == ()
    assert plan.refused is not None and "300 of 1000" in plan.refused


def test_exactly_the_ratio_is_allowed() -> None:
    plan = plan_removals(range(1, 101), range(21, 101), GUARD)
    assert plan.ok and len(plan.candidates) == 20


def test_a_tiny_tenant_can_lose_up_to_floor_agreements() -> None:
    assert plan_removals([1, 2, 3], [1], GUARD).candidates == (2, 3)
    assert not plan_removals([1, 2, 3, 4], [1], GUARD).ok


def test_the_ratio_is_configurable() -> None:
    plan = plan_removals(range(1, 101), range(51, 101), RemovalGuard(max_ratio=0.5, floor=0))
    assert plan.ok and len(plan.candidates) == 50
