"""Benchmark the ConnectWise simulator: agreements/s in 1,000-row pages and addition-list requests/s.

The simulator runs in its own process (`run_simulator(subprocess=True)`); this process is the load
generator. Each figure has a same-run baseline on the same server: a bare Starlette endpoint under
/_sim/baseline returning a fixed pre-serialised 1,000-agreement array (for agreements/s) or a fixed tiny
JSON (for requests/s) -- the framework's ceiling with the same load generator.

The load generator is a minimal keep-alive HTTP/1.1 client on asyncio streams (uvloop), several
connections: httpx and a full `orjson.loads` of every 2.8 MB page cost more CPU than the server does, and
on a 2-core machine they would measure the client. Rows are counted from the bytes (the `},{"id":`
separators between top-level records); the first page of every worker is fully parsed and checked.

Goals: >= 50,000 agreements/s and >= 1,000 addition-list requests/s (2-core machine, no injected latency).
Each figure is the median of ROUNDS rounds that alternate simulator and baseline (the machine is shared, so
alternating keeps both sides under the same background load).
Environment: CWSIM_BENCH_SECONDS (default 2) per round, CWSIM_BENCH_ROUNDS (default 5),
CWSIM_BENCH_CONCURRENCY (default 2 connections: one core serves, one generates load).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import time
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import orjson
import uvloop

from bench.report import report
from devtools.cwsim.testing import SimHandle, run_simulator

SECONDS = float(os.environ.get("CWSIM_BENCH_SECONDS", "2"))
CONCURRENCY = int(os.environ.get("CWSIM_BENCH_CONCURRENCY", "2"))
ROUNDS = int(os.environ.get("CWSIM_BENCH_ROUNDS", "5"))
COMPANIES, PER_COMPANY, ADDITIONS = 50, 200, 4  # 10,000 agreements, ~40,000 additions


class RawClient:
    """One keep-alive HTTP/1.1 connection; GET only; Content-Length bodies only (what the simulator sends)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=2**22)
        assert self.reader is not None
        self.writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.head}\r\n".encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return int(head[9:12]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def count_rows(body: bytes) -> int:
    """Top-level records in a pre-serialised array page (records never nest `},{"id":`)."""
    if body in (b"[]", b""):
        return 0
    return body.count(b'},{"id":') + 1


async def _drive(
    sim: SimHandle, targets: list[str], seconds: float, rows: bool, cursor: Iterator[int] | None = None
) -> tuple[int, int, float]:
    """CONCURRENCY connections walking through `targets` (from `cursor`, shared across calls) for `seconds`;
    returns (requests, rows, elapsed)."""
    position = cursor if cursor is not None else itertools.count()
    url = urlsplit(sim.site_url)
    assert url.hostname is not None and url.port is not None
    deadline = time.perf_counter() + seconds
    totals = [0, 0]

    async def worker() -> None:
        client = RawClient(url.hostname or "", url.port or 0, sim.auth_headers())
        checked = False
        try:
            while time.perf_counter() < deadline:
                target = targets[next(position) % len(targets)]
                status, body = await client.get(target)
                if status != 200:
                    raise RuntimeError(f"{target} answered {status}: {body[:200]!r}")
                n = count_rows(body) if rows else 1
                if not checked:  # full parse of the first answer: the byte count must agree
                    parsed = orjson.loads(body)
                    if rows and len(parsed) != n:
                        raise RuntimeError(f"row count {n} != parsed {len(parsed)}")
                    checked = True
                totals[0] += 1
                totals[1] += n
        finally:
            client.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return totals[0], totals[1], time.perf_counter() - start


async def _run(sim: SimHandle) -> dict[str, float]:
    api = urlsplit(sim.base_url).path
    all_ids = [row["id"] for row in _ids(sim, all_rows=True)]
    ids = all_ids[:1000]
    count = len(all_ids)
    pages = (count + 999) // 1000
    # A poller's pass: the same `lastUpdated >= [cursor]` query paged through to the end; every pass has a
    # new cursor, so its first page pays for the query (a cache miss) and later pages reuse the result.
    agreement_pages = [
        f"{api}/finance/agreements?conditions={quote(f'lastUpdated >= [{stamp}]')}"
        f"&orderBy=id%20asc&pageSize=1000&page={p}"
        for stamp in (_stamp(k) for k in range(5000))
        for p in range(1, pages + 1)
    ]
    addition_lists = [f"{api}/finance/agreements/{i}/additions" for i in ids]
    results: dict[str, float] = {"agreements": float(count)}
    pass_cursor = itertools.count()  # never revisits a pass: every pass's first page is a fresh query
    await _drive(sim, agreement_pages, 1.0, rows=True, cursor=pass_cursor)
    await _drive(sim, addition_lists, 0.5, rows=False)
    sim_rows, base_rows, sim_lists, base_lists = [], [], [], []
    for _ in range(ROUNDS):
        _, rows, elapsed = await _drive(sim, agreement_pages, SECONDS, rows=True, cursor=pass_cursor)
        sim_rows.append(rows / elapsed)
        _, rows, elapsed = await _drive(sim, ["/_sim/baseline?rows=1000"], SECONDS, rows=True)
        base_rows.append(rows / elapsed)
        requests, _, elapsed = await _drive(sim, addition_lists, SECONDS, rows=False)
        sim_lists.append(requests / elapsed)
        requests, _, elapsed = await _drive(sim, ["/_sim/baseline"], SECONDS, rows=False)
        base_lists.append(requests / elapsed)
    for name, values in (
        ("agreements/s", sim_rows),
        ("baseline agreements/s", base_rows),
        ("addition lists/s", sim_lists),
        ("baseline requests/s", base_lists),
    ):
        print(f"  rounds {name}: " + ", ".join(f"{v:,.0f}" for v in values))
    results["agreements_per_s"] = statistics.median(sim_rows)
    results["baseline_agreements_per_s"] = statistics.median(base_rows)
    results["addition_lists_per_s"] = statistics.median(sim_lists)
    results["baseline_requests_per_s"] = statistics.median(base_lists)
    stats = sim.control.stats()
    results["non_200"] = sum(v for k, v in stats["by_status"].items() if k != "200")
    return results


def _stamp(k: int) -> str:
    """Distinct old cursors (all agreements match): 2000-01-01T00:00:00Z + k seconds."""
    return f"2000-01-01T{k // 3600:02d}:{k // 60 % 60:02d}:{k % 60:02d}Z"


def _ids(sim: SimHandle, all_rows: bool = False) -> list[dict[str, int]]:
    with sim.client(timeout=60) as client:
        rows: list[dict[str, int]] = []
        page = 1
        while True:
            batch = client.get(
                "/finance/agreements", params={"pageSize": 1000, "page": page, "fields": "id"}
            ).json()
            rows += batch
            if not all_rows or len(batch) < 1000:
                return rows
            page += 1


def main() -> None:
    print(
        f"cwsim: {COMPANIES * PER_COMPANY:,} agreements, ~{COMPANIES * PER_COMPANY * ADDITIONS:,} additions; "
        f"simulator in a subprocess; {CONCURRENCY} connections; median of {ROUNDS} x {SECONDS:.0f} s rounds",
        flush=True,
    )
    with run_simulator(
        companies=COMPANIES,
        agreements_per_company=PER_COMPANY,
        additions_per_agreement=ADDITIONS,
        subprocess=True,
    ) as sim:
        results = uvloop.run(_run(sim))
    print(f"non-200 answers during the run: {results['non_200']:.0f}")
    report(
        "cwsim_agreements_per_s",
        results["agreements_per_s"],
        "agreements/s",
        results["baseline_agreements_per_s"],
        goal="(goal >= 50,000/s; baseline = bare Starlette endpoint serving a fixed 1,000-agreement array)",
    )
    report(
        "cwsim_addition_lists_per_s",
        results["addition_lists_per_s"],
        "requests/s",
        results["baseline_requests_per_s"],
        goal="(goal >= 1,000/s; baseline = bare Starlette endpoint serving a fixed tiny JSON)",
    )


if __name__ == "__main__":
    main()
