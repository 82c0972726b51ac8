"""The one module where the mapper uses faust-streaming (0.15) beyond its documented API.

Why: faust's own delivery is wrong around recovery and gaps - offsets skipped after a rebalance or
recovery (faust-streaming/faust#216, #221), and acknowledged offsets that stop committing when a
gap appears (faust-streaming/faust#596 "A race condition in recovery causes unrecoverable gaps in
acked offsets and consequently blocks committing", #606 "Wrong offset commit in case of gaps").
The mapper keeps its own durable input positions, re-reads skipped input and commits up to those
positions; for that it needs what faust keeps to itself, listed in `REQUIRED`. (The mapper's state
is its own - services.mapper.state_store and services.mapper.changelog - so no faust table internal
is needed.)

Contract: `missing(app)` is the start-up self-check - the names of the internals this faust
release no longer provides (empty when all are there). The worker reports itself not ready and
sets `contract_sync_mapper_faust_internals_missing` to their number when it is not empty, so a
faust upgrade that renames one fails loudly instead of silently turning off the gap check and the
position commits. Every other function here assumes the self-check passed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

REQUIRED: tuple[str, ...] = (
    "app.consumer._committed_offset",
    "app.consumer._commit_offsets",
)


def missing(app: Any) -> list[str]:
    """The internals of `REQUIRED` that `app` does not provide (the start-up self-check)."""
    roots = {"app": app}
    gone: list[str] = []
    for path in REQUIRED:
        root, *steps = path.split(".")
        value: Any = roots[root]
        for step in steps:
            value = getattr(value, step, _ABSENT)
            if value is _ABSENT:
                gone.append(path)
                break
    return gone


_ABSENT = object()


def committed_offsets(app: Any) -> Mapping[Any, int | None]:
    """The consumer group's committed offset per assigned partition, as faust last saw it."""
    committed: Mapping[Any, int | None] = app.consumer._committed_offset
    return committed


def offset_committer(app: Any) -> Callable[[dict[Any, int]], Awaitable[Any]]:
    """faust's own commit call (it never moves a partition's offset backwards)."""
    commit: Callable[[dict[Any, int]], Awaitable[Any]] = app.consumer._commit_offsets
    return commit
