"""The one output format every benchmark uses.

Each benchmark prints human-readable lines, then exactly one final JSON line:
`{"benchmark": ..., "value": ..., "unit": ..., "baseline": ..., "ratio": ...}` where the
baseline is measured in the same run (never a constant) and ratio = value / baseline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager


def report(benchmark: str, value: float, unit: str, baseline: float, *, goal: str = "") -> None:
    ratio = value / baseline if baseline else float("inf")
    print(
        f"{benchmark}: {value:,.1f} {unit} (baseline {baseline:,.1f} {unit}, ratio {ratio:.2f}) {goal}".rstrip()
    )
    print(
        json.dumps(
            {
                "benchmark": benchmark,
                "value": round(value, 3),
                "unit": unit,
                "baseline": round(baseline, 3),
                "ratio": round(ratio, 3),
            }
        ),
        flush=True,
    )


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """Yields a one-element list that holds the elapsed seconds once the block ends."""
    elapsed = [0.0]
    start = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed[0] = time.perf_counter() - start
