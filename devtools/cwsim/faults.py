"""Injectable faults, the request budget (429), security-role permissions and request statistics.

All of it is plain state mutated through the control API and read by the HTTP layer on every
ConnectWise request. Times here use the monotonic wall clock, not the simulator clock, so freezing
or moving the simulated date never stalls throttling windows or fault periods.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Faults:
    """Fault knobs. Rates are probabilities per request (0..1); durations in ms or s as named."""

    latency_ms: float = 0.0  # added to every ConnectWise request
    spike_rate: float = 0.0  # probability of an extra latency spike
    spike_ms: float = 0.0
    error_rate: float = 0.0  # probability of a 5xx answer
    error_status: int = 500
    timeout_rate: float = 0.0  # probability of hanging, then dropping the connection without an answer
    timeout_hang_s: float = 30.0
    unauthorized_until: float = 0.0  # monotonic deadline of a forced-401 period (inf = until cleared)
    forbidden_until: float = 0.0  # monotonic deadline of a forced-403 period
    proxy_404_rate: float = 0.0  # probability that a GET of one record by id (a path with a numeric
    # id) answers 404 with a proxy's HTML page instead of reaching ConnectWise (lists still work)
    missing_agreements: list[int] = field(default_factory=list)  # these agreements answer ConnectWise's
    # own NotFound to every request by id (the agreement, its additions) although they still exist and
    # are listed, as when an API member's scope hides them; clearing the list brings them back unchanged

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update. `force_401_s` / `force_403_s` (seconds, 0 clears, -1 = until cleared)
        start or stop forced periods. Raises ValueError for unknown keys or bad values."""
        known = {f.name for f in fields(self)} - {
            "unauthorized_until",
            "forbidden_until",
            "missing_agreements",
        }
        for key, value in changes.items():
            if key == "missing_agreements":
                if not isinstance(value, list) or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
                ):
                    raise ValueError("missing_agreements must be a list of agreement ids")
                self.missing_agreements = list(value)
            elif key in ("force_401_s", "force_403_s"):
                seconds = float(value)
                deadline = 0.0 if seconds == 0 else math.inf if seconds < 0 else time.monotonic() + seconds
                if key == "force_401_s":
                    self.unauthorized_until = deadline
                else:
                    self.forbidden_until = deadline
            elif key in known:
                number = float(value)
                if key.endswith("_rate") and not 0.0 <= number <= 1.0:
                    raise ValueError(f"{key} must be between 0 and 1")
                if number < 0:
                    raise ValueError(f"{key} must not be negative")
                if key == "error_status":
                    if not 500 <= number <= 599:
                        raise ValueError("error_status must be a 5xx code")
                    setattr(self, key, int(number))
                else:
                    setattr(self, key, number)
            else:
                raise ValueError(f"unknown fault {key!r}")

    def forced_401(self) -> bool:
        return time.monotonic() < self.unauthorized_until

    def forced_403(self) -> bool:
        return time.monotonic() < self.forbidden_until

    def view(self) -> dict[str, Any]:
        data = asdict(self)
        now = time.monotonic()
        for key, name in (
            ("unauthorized_until", "force_401_remaining_s"),
            ("forbidden_until", "force_403_remaining_s"),
        ):
            deadline = data.pop(key)
            data[name] = -1 if deadline == math.inf else max(0.0, round(deadline - now, 3))
        return data


class Budget:
    """A fixed one-minute window of `per_minute` requests (0 = unlimited). `take()` returns 0 when the
    request may proceed, else the whole seconds until the window resets (the `Retry-After`)."""

    def __init__(self, per_minute: int = 0, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self._start = time.monotonic()
        self._used = 0

    def set(self, per_minute: int, window_s: float | None = None) -> None:
        if per_minute < 0:
            raise ValueError("requests_per_minute must not be negative")
        self.per_minute = per_minute
        if window_s is not None:
            if window_s <= 0:
                raise ValueError("window_s must be positive")
            self.window_s = window_s
        self._start = time.monotonic()
        self._used = 0

    def take(self) -> int:
        if self.per_minute <= 0:
            return 0
        now = time.monotonic()
        if now - self._start >= self.window_s:
            self._start = now
            self._used = 0
        if self._used < self.per_minute:
            self._used += 1
            return 0
        return max(1, math.ceil(self._start + self.window_s - now))

    def view(self) -> dict[str, Any]:
        remaining = max(0.0, self._start + self.window_s - time.monotonic())
        return {
            "requests_per_minute": self.per_minute,
            "window_s": self.window_s,
            "used_in_window": self._used,
            "window_resets_in_s": round(remaining, 3),
        }


# Security-role permissions of the API member -> the human name the 403 message uses.
PERMISSIONS: dict[str, str] = {
    "finance_agreements": "Finance > Agreements (Inquire)",
    "company_maintenance": "Companies > Company Maintenance (Inquire)",
    "table_setup": "System > Table Setup (Inquire)",
    "system_callbacks": "System > Callbacks (Add/Inquire/Delete)",
}


@dataclass
class Permissions:
    """Which inquire rights the API member's security role has (all granted by default)."""

    granted: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(PERMISSIONS, True))

    def update(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if key not in PERMISSIONS:
                raise ValueError(f"unknown permission {key!r}; one of {sorted(PERMISSIONS)}")
            if not isinstance(value, bool):
                raise ValueError(f"permission {key} must be true or false")
            self.granted[key] = value

    def allows(self, permission: str | None) -> bool:
        return permission is None or self.granted.get(permission, True)


class Stats:
    """Request counters: served, throttled, by route template and by status."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.throttled = 0
        self.by_path: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.by_path_status: Counter[str] = Counter()
        self.rows_served = 0
        self.started = time.monotonic()

    def record(self, route: str, status: int) -> None:
        self.requests += 1
        self.by_path[route] += 1
        self.by_status[status] += 1
        self.by_path_status[f"{route} {status}"] += 1
        if status == 429:
            self.throttled += 1

    def view(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "served": self.requests - self.throttled,
            "throttled": self.throttled,
            "rows_served": self.rows_served,
            "by_path": dict(self.by_path),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_path_status": dict(self.by_path_status),
            "uptime_s": round(time.monotonic() - self.started, 3),
        }


class FaultDice:
    """The random source for faults (seeded, so a run's fault pattern is reproducible)."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def roll(self, probability: float) -> bool:
        return probability > 0 and self._rng.random() < probability
