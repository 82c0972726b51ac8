"""Client-side rate limiting: an async token bucket per tenant.

ConnectWise publishes no quota ("over 1,000 requests per minute will likely be throttled"), so
each tenant gets a configured budget (default 600 requests/minute). The bucket refills at
`requests_per_minute / 60` tokens per second and holds at most `burst` tokens, so in any window of
`T` seconds at most `burst + rate * T` requests start. The limiter starts with one token, so a
fresh client never opens with a burst.

`pause_until` lets a 429's `Retry-After` stop *every* request of the tenant, not only the one that
was throttled. The limiter is fair (FIFO): waiters are served in arrival order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
_EPSILON = 1e-6


class TokenBucket:
    """An async token bucket. `acquire()` waits until a token is available, then takes it.

    Guarantees: at most `burst + rate_per_second * T` acquisitions complete in any window of
    `T` seconds (with the injected clock); no acquisition completes before a `pause_until` deadline.
    Safe for many concurrent tasks on one event loop.
    """

    def __init__(
        self,
        requests_per_minute: float,
        *,
        burst: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        self.rate_per_second = requests_per_minute / 60.0
        self.capacity = max(1.0, burst if burst is not None else min(self.rate_per_second, 10.0))
        self._clock = clock
        self._sleep = sleep
        self._tokens = 1.0
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self.waited_seconds = 0.0

    @property
    def requests_per_minute(self) -> float:
        return self.rate_per_second * 60.0

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate_per_second)
        self._updated = now

    def pause_until(self, deadline: float) -> None:
        """No token is handed out before `deadline` (a value of the limiter's clock)."""
        if deadline > self._paused_until:
            self._paused_until = deadline

    def pause_for(self, seconds: float) -> None:
        """Pause all acquisitions for `seconds` from now."""
        self.pause_until(self._clock() + max(0.0, seconds))

    async def acquire(self) -> float:
        """Take one token, waiting as needed; returns the seconds waited."""
        waited = 0.0
        async with self._lock:  # FIFO: one waiter at a time owns the next token
            while True:
                now = self._clock()
                if now < self._paused_until:
                    delay = self._paused_until - now
                else:
                    self._refill(now)
                    if self._tokens >= 1.0 - _EPSILON:  # tolerance: float rounding must not spin
                        self._tokens = max(0.0, self._tokens - 1.0)
                        self.waited_seconds += waited
                        return waited
                    delay = (1.0 - self._tokens) / self.rate_per_second
                await self._sleep(delay)
                waited += delay
