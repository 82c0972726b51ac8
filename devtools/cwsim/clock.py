"""The simulator's own clock: wall clock by default, movable and freezable through the control API."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


def format_cw(value: datetime) -> str:
    """ConnectWise's datetime format: UTC, whole seconds, `Z` (e.g. `2025-03-14T16:02:11Z`)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SimClock:
    """now() = wall clock + offset, or a frozen instant. Thread-safe; never goes through the OS clock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0
        self._frozen: float | None = None

    def now(self) -> datetime:
        with self._lock:
            ts = self._frozen if self._frozen is not None else time.time() + self._offset
        return datetime.fromtimestamp(ts, UTC)

    def now_cw(self) -> str:
        return format_cw(self.now())

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def set(self, value: datetime) -> None:
        """Jump to `value`; a frozen clock stays frozen there, a running one keeps running from there."""
        ts = value.timestamp()
        with self._lock:
            if self._frozen is not None:
                self._frozen = ts
            else:
                self._offset = ts - time.time()

    def advance(self, seconds: float) -> None:
        with self._lock:
            if self._frozen is not None:
                self._frozen += seconds
            else:
                self._offset += seconds

    def freeze(self) -> None:
        with self._lock:
            if self._frozen is None:
                self._frozen = time.time() + self._offset

    def resume(self) -> None:
        """Unfreeze, continuing from the frozen instant."""
        with self._lock:
            if self._frozen is not None:
                self._offset = self._frozen - time.time()
                self._frozen = None

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0
            self._frozen = None

    def state(self) -> dict[str, object]:
        return {"now": self.now_cw(), "frozen": self.frozen, "offset_s": round(self._offset, 3)}
