"""The chaos checker's count of announced creations treats events as consumers must: by `id`."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root: `chaos` is not installed

from chaos.harness import created_total


def _run(events: list[dict[str, Any]]) -> Any:
    def matching(predicate: Any) -> list[dict[str, Any]]:
        return [e for e in events if predicate(e)]

    return SimpleNamespace(pipeline=SimpleNamespace(events=matching))


def _applied(event_id: str, created: int) -> dict[str, Any]:
    return {"id": event_id, "type": "sync.contracts.applied", "data": {"created": created}}


def test_an_event_the_outbox_published_again_with_the_same_id_counts_once() -> None:
    run = _run([_applied("a", 5), _applied("b", 3), _applied("a", 5)])

    assert created_total(run) == 8


def test_two_events_with_different_ids_both_count_even_when_they_announce_the_same_creation() -> None:
    run = _run([_applied("a", 5), _applied("c", 5), {"id": "x", "type": "sync.catalog.changed", "data": {}}])

    assert created_total(run) == 10
