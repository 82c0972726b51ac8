"""ConnectWise client: how much of a tenant's request budget it uses, without ever being throttled.

Setup: the ConnectWise simulator in its own process, 200 ms added latency on every request.
1. Ceiling: the client with its limiter effectively off, simulator budget off, the same concurrency:
   what this machine + simulator can do (shows that in step 2 the limiter, not the machine, caps).
2. Budget run: simulator budget 6,000 requests/minute, enforced per 10-second window (1,000 per
   window; 429 + Retry-After above it), so the budget binds within the run; the client
   configured to the same 6,000/minute; 30 s of `GET /finance/agreements/{id}` from many tasks.
3. Control: the same budget with the limiter off, to show that the budget does throttle.
Goal: ≥ 90 % of the budget with zero 429 answers. Baseline of the final line = the budget.

Env: BENCH_CW_SECONDS (30), BENCH_CW_WINDOW_S (10), BENCH_CW_CEILING_SECONDS (10), BENCH_CW_BUDGET (6000), BENCH_CW_WORKERS (64),
BENCH_CW_CONNECTIONS (64: the client's max_connections; the client keeps the rest of the tasks queued).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from dataclasses import dataclass

from bench.report import report
from devtools.cwsim.testing import SimHandle, run_simulator
from services.poller.connectwise import ConnectWiseClient, ConnectWiseConnection

LATENCY_MS = 200


@dataclass
class Run:
    requests: int
    seconds: float
    throttled: int
    errors: int

    @property
    def per_minute(self) -> float:
        return self.requests / self.seconds * 60.0


def _connection(sim: SimHandle, requests_per_minute: float, connections: int) -> ConnectWiseConnection:
    return ConnectWiseConnection(
        site=sim.site_url,
        company_id=sim.company_id,
        public_key=sim.public_key,
        private_key=sim.private_key,
        client_id=sim.client_id,
        requests_per_minute=requests_per_minute,
        max_connections=connections,
    )


async def _drive(sim: SimHandle, requests_per_minute: float, seconds: float, workers: int) -> Run:
    connections = int(os.environ.get("BENCH_CW_CONNECTIONS", "64"))
    async with ConnectWiseClient(_connection(sim, requests_per_minute, connections)) as client:
        ids = [a.id async for a in client.list_agreements(fields=["id"]) if a.id is not None]
        ids_cycle = itertools.cycle(ids)
        start_stats = client.stats.snapshot()
        errors = 0
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                try:
                    await client.get_agreement(next(ids_cycle))
                except Exception:
                    errors += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.monotonic() - started
        used = client.stats.snapshot() - start_stats
    return Run(requests=int(used.requests), seconds=elapsed, throttled=int(used.throttled), errors=errors)


def main() -> None:
    seconds = float(os.environ.get("BENCH_CW_SECONDS", "30"))
    ceiling_seconds = float(os.environ.get("BENCH_CW_CEILING_SECONDS", "10"))
    budget = int(os.environ.get("BENCH_CW_BUDGET", "6000"))
    workers = int(os.environ.get("BENCH_CW_WORKERS", "64"))
    window_s = int(os.environ.get("BENCH_CW_WINDOW_S", "10"))
    logging.getLogger("services.poller.connectwise").setLevel(logging.ERROR)  # the control run's 429 warnings
    print(f"machine load average (1/5/15 min): {os.getloadavg()}")
    with run_simulator(seed=3, companies=10, agreements_per_company=20, subprocess=True) as sim:
        sim.control.set_faults(latency_ms=LATENCY_MS)

        sim.control.set_budget(0)
        ceiling = asyncio.run(_drive(sim, 10_000_000, ceiling_seconds, workers))
        print(
            f"ceiling (limiter off, no budget, {workers} tasks, {LATENCY_MS} ms latency): "
            f"{ceiling.per_minute:,.0f} req/min over {ceiling.seconds:.1f}s, errors {ceiling.errors}"
        )

        # the same rate in 10-second windows (1,000 per 10 s for 6,000/min): stricter than one
        # 60-second window, and binding within the 30-second run
        sim.control.set_budget(budget * window_s // 60, window_s=window_s)
        sim.control.reset_stats()
        limited = asyncio.run(_drive(sim, budget, seconds, workers))
        server = sim.control.stats()
        # control: the same budget with the client's limiter off must be throttled (the budget binds)
        sim.control.set_budget(budget * window_s // 60, window_s=window_s)
        control = asyncio.run(_drive(sim, 10_000_000, window_s + 2, workers))
        print(
            f"control (limiter off, same budget): {control.per_minute:,.0f} req/min, "
            f"429s seen by client {control.throttled}"
        )
        sim.control.set_budget(0)
        sim.control.clear_faults()

    ratio = limited.per_minute / budget
    print(
        f"budget run: achieved {limited.per_minute:,.0f} req/min over {limited.seconds:.1f}s "
        f"({limited.requests} requests), budget {budget:,} req/min ({budget * window_s // 60} per {window_s}s), "
        f"ratio {ratio:.3f}, "
        f"429s seen by client {limited.throttled}, 429s sent by simulator {server.get('throttled')}, "
        f"errors {limited.errors}"
    )
    print(
        f"ceiling / budget = {ceiling.per_minute / budget:.2f}: "
        + (
            "the limiter is what caps the budget run"
            if ceiling.per_minute > budget * 1.05
            else "WARNING: the machine, not the limiter, is the cap"
        )
    )
    verdict = "PASS" if ratio >= 0.9 and limited.throttled == 0 and server.get("throttled") == 0 else "FAIL"
    report(
        "cw_client_unthrottled_ceiling",
        ceiling.per_minute,
        "req/min",
        limited.per_minute,
        goal="(ceiling vs the limited run: > 1 means the limiter caps)",
    )
    report(
        "cw_client_budget_use",
        limited.per_minute,
        "req/min",
        float(budget),
        goal=f"(goal ≥ 0.90 of budget with zero 429s: {verdict}; 429s={limited.throttled})",
    )


if __name__ == "__main__":
    main()
