"""The gateway (Sync API): catalog reads and command POSTs, against a bare ASGI endpoint running the
same catalog SQL (`bench/gateway_bare.py`), both measured in this run.

Set-up: one client with 100 agreements x 5 additions (600 catalog items: half new, half updated
with a field-level change each, so the default new+updated filter lists all of them; the tables are
ANALYZEd after seeding, as autovacuum would, so the plans are the steady state's), the gateway as a
process (`contract-sync gateway`: uvicorn, one worker, uvloop + httptools), the same gateway with
its catalog cache off (`GATEWAY_CATALOG_CACHE_ENTRIES=0`: every read renders the document) and the
bare endpoint as a process (same server and settings, same pool size). Load comes from this process
over keep-alive HTTP/1.1 connections with a minimal client (so the client's own cost stays small and
equal for all); the CPU time each server and the load generator used is printed per phase:

1. latency at a fixed rate: `BENCH_GATEWAY_RATE` (200) catalog requests per second for
   `BENCH_GATEWAY_SECONDS` (10 s), open loop (latency counted from the scheduled send time, so a
   slow server cannot hide its queue): p50 / p99 for the gateway and for the bare endpoint;
2. throughput: `BENCH_GATEWAY_CONCURRENCY` (8) requests in flight for `BENCH_GATEWAY_SECONDS`,
   closed loop: requests per second of each, and the ratio gateway / bare (the final JSON line; the
   uncached gateway's ratio is printed too);
3. command POSTs (`POST /v1/clients/{c}/sync`, each published to Kafka with acks=all and recorded
   in PostgreSQL) at the same concurrency: p50 / p99 and throughput.

Goals (issue 16): catalog p99 <= 50 ms at 200 requests/s, throughput >= 50 % of the bare endpoint.
Needs Kafka and PostgreSQL (`KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL`; defaults: the local stack).
Rows and topics it creates are removed at the end.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.report import report
from services.common.db import migrate
from services.common.db.roles import OWNER
from services.common.settings import DatabaseSettings, KafkaSettings
from services.gateway.local_issuer import ensure_keys, mint_token
from services.gateway.readmodel import conninfo
from services.launcher.group import ProcessGroup, contract_sync_command, free_port, wait_until

AGREEMENTS = 100
ADDITIONS = 5
CLIENT = "4242"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# ------------------------------------------------------------------------------------------------
# a minimal keep-alive HTTP/1.1 client (the same cost against both servers)


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def _get(path: str, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n".encode()


def _post(path: str, token: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux `/proc/<pid>/stat`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def fixed_rate(port: int, raw: bytes, rate: int, seconds: float, connections: int = 32) -> list[float]:
    """Open loop: one request every 1/rate s; latency from the scheduled time (ms)."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection.open(port))
    latencies: list[float] = []
    errors = 0

    async def one(scheduled: float) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            status = await conn.request(raw)
            if status != 200:
                errors += 1
            latencies.append((time.perf_counter() - scheduled) * 1000)
        finally:
            pool.put_nowait(conn)

    start = time.perf_counter()
    tasks = []
    for i in range(int(rate * seconds)):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait().close()
    if errors:
        raise RuntimeError(f"{errors} requests failed")
    return latencies


async def closed_loop(port: int, make: Any, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    """`concurrency` requests in flight for `seconds`: (requests per second, latencies ms)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    statuses: dict[int, int] = {}

    async def worker() -> None:
        conn = await Connection.open(port)
        try:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                status = await conn.request(make())
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append((time.perf_counter() - sent) * 1000)
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    bad = {s: n for s, n in statuses.items() if s >= 300}
    if bad:
        raise RuntimeError(f"unexpected statuses {bad}")
    return len(latencies) / elapsed, latencies


# ------------------------------------------------------------------------------------------------
# data


def seed(database_url: str, tenant: str) -> None:
    now = datetime.now(UTC)
    older = now - timedelta(days=1)
    items, contracts = [], []
    for a in range(1, AGREEMENTS + 1):
        synced = a % 2 == 0
        key = f"cw:{tenant}:agreement:{a}"
        summary = {"bill_amount": f"{100 + a}.00", "currency": "USD", "billing_cycle": "Monthly",
                   "start_date": "2024-01-01T00:00:00Z", "type": "Managed Services"}  # fmt: skip
        items.append((key, "agreement", a, None, f"Agreement {a}", orjson.dumps(summary).decode()))
        if synced:
            contracts.append((key, "agreement", a, None, f"Agreement {a}", "99.00"))
        for x in range(1, ADDITIONS + 1):
            addition_id = a * 100 + x
            xkey = f"cw:{tenant}:addition:{addition_id}"
            xsummary = {"product": f"SKU-{x}", "quantity": "4", "less_included": "0", "unit_price": "12.50",
                        "bill_customer": "Billable", "effective_date": "2024-01-01T00:00:00Z"}  # fmt: skip
            items.append(
                (xkey, "addition", a, addition_id, f"Addition {addition_id}", orjson.dumps(xsummary).decode())
            )
            if synced:
                contracts.append((xkey, "addition", a, addition_id, f"Addition {addition_id}", "40.00"))
    with psycopg.connect(conninfo(database_url), autocommit=False) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO catalog_items (contract_key, tenant_id, client_id, kind, agreement_id, addition_id, name,"
            " summary, psa_last_updated, observed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
            [(k, tenant, CLIENT, kind, a, x, n, s, now, now) for k, kind, a, x, n, s in items],
        )
        cur.executemany(
            "INSERT INTO contracts (contract_key, tenant_id, client_id, psa, kind, agreement_id, addition_id, name,"
            " psa_name, psa_synced, psa_last_updated, status, billing_amount, billing_currency, billing_cycle,"
            " psa_start_date, start_date) VALUES (%s, %s, %s, 'connectwise', %s, %s, %s, %s, %s, true, %s,"
            " 'active', %s, 'USD', 'monthly', '2024-01-01', '2024-01-01')",
            [(k, tenant, CLIENT, kind, a, x, n, n, older, amount) for k, kind, a, x, n, amount in contracts],
        )
        cur.execute(
            "INSERT INTO client_sync_settings (tenant_id, client_id, auto_sync, last_synced_at) VALUES (%s, %s, false, %s)",
            (tenant, CLIENT, older),
        )
        conn.commit()
    with psycopg.connect(conninfo(database_url), autocommit=True) as conn:
        for table in ("catalog_items", "contracts", "client_sync_settings"):
            conn.execute(f"ANALYZE {table}")


def unseed(database_url: str, tenant: str) -> None:
    with psycopg.connect(conninfo(database_url), autocommit=False) as conn, conn.cursor() as cur:
        cur.execute(f'SET LOCAL ROLE "{OWNER}"')  # only the owner deletes synced contracts
        for table in ("contracts", "catalog_items", "client_sync_settings", "gateway_commands",
                      "gateway_command_events"):  # fmt: skip
            cur.execute(f"DELETE FROM {table} WHERE tenant_id = %s", (tenant,))
        conn.commit()


async def _topics(bootstrap: str, names: list[str], create: bool) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if create:
            await admin.create_topics([NewTopic(n, num_partitions=6, replication_factor=1) for n in names])
        else:
            await admin.delete_topics(names)
    finally:
        await admin.close()


# ------------------------------------------------------------------------------------------------


def _line(name: str, latencies: list[float], rps: float | None = None) -> str:
    text = (
        f"  {name:<34} p50 {_percentile(latencies, 0.5):7.2f} ms  p99 {_percentile(latencies, 0.99):7.2f} ms"
    )
    return text + (f"  {rps:8.1f} req/s" if rps is not None else f"  ({len(latencies)} requests)")


def main() -> None:
    database_url = DatabaseSettings().url
    bootstrap = KafkaSettings().bootstrap_servers
    migrate(database_url)
    rate = _env_int("BENCH_GATEWAY_RATE", 200)
    seconds = float(os.environ.get("BENCH_GATEWAY_SECONDS", "10"))
    concurrency = _env_int("BENCH_GATEWAY_CONCURRENCY", 8)
    run = uuid.uuid4().hex[:8]
    tenant = f"bench-gw-{run}"
    topics = [f"bench-gw-{run}.sync.commands.v1", f"bench-gw-{run}.sync.events.v1"]
    asyncio.run(_topics(bootstrap, topics, create=True))
    seed(database_url, tenant)
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    keys = ensure_keys(work / "keys")
    gateway_port, uncached_port, bare_port = free_port(), free_port(), free_port()
    env = {
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(gateway_port),
        "GATEWAY_JWKS_FILE": str(keys.jwks_path),
        "GATEWAY_COMMANDS_TOPIC": topics[0],
        "GATEWAY_EVENTS_TOPIC": topics[1],
        "GATEWAY_OUTCOMES_GROUP_ID": f"bench-gw-{run}",
        "GATEWAY_RATE_LIMIT_PER_SECOND": "100000",
        "GATEWAY_RATE_LIMIT_BURST": "100000",
        "LOG_LEVEL": "WARNING",
    }
    group = ProcessGroup(work / "logs", env)
    try:
        group.start("gateway", contract_sync_command("gateway"))
        group.start("uncached", contract_sync_command("gateway"),
                    env={"GATEWAY_PORT": str(uncached_port), "GATEWAY_CATALOG_CACHE_ENTRIES": "0",
                         "GATEWAY_OUTCOMES_GROUP_ID": f"bench-gw-{run}-uncached"})  # fmt: skip
        group.start("bare", [sys.executable, "-m", "bench.gateway_bare", "--port", str(bare_port)])
        ports = {"gateway": gateway_port, "uncached": uncached_port, "bare": bare_port}
        for name, port in ports.items():
            path = "/readyz" if name != "bare" else f"/?tenant={tenant}&client={CLIENT}"
            if not wait_until(lambda p=port, q=path: httpx.get(f"http://127.0.0.1:{p}{q}", timeout=5).status_code == 200,
                              timeout_s=60):  # fmt: skip
                raise RuntimeError(f"{name} did not start:\n{group.members[name].log_tail()}")
        token = mint_token(keys, tenant_id=tenant, subject="bench", issuer="contract-sync-local",
                           audience="contract-sync-gateway",
                           scopes=["catalog:read", "sync:write"], ttl_seconds=3600)  # fmt: skip
        catalog = _get(f"/v1/clients/{CLIENT}/catalog", token)
        bare = _get(f"/?tenant={tenant}&client={CLIENT}", None)
        document = httpx.get(f"http://127.0.0.1:{gateway_port}/v1/clients/{CLIENT}/catalog",
                             headers={"Authorization": f"Bearer {token}"}).json()  # fmt: skip
        listed = sum(1 + len(a["additions"]) for a in document["agreements"])
        changed = sum(1 for a in document["agreements"] for x in a["additions"] if x["changes"])
        print(f"catalog of one client: {listed} items listed ({changed} updated additions with changes); "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
        pids = {name: int(group.members[name].pid or 0) for name in ports}
        requests = {"gateway": catalog, "uncached": catalog, "bare": bare}

        async def phase(name: str, run_phase: Any) -> tuple[Any, float, float]:
            """(result, the server's CPU s, the load generator's CPU s) of one phase."""
            server, own = cpu_seconds(pids[name]), _own_cpu()
            result = await run_phase
            return result, cpu_seconds(pids[name]) - server, _own_cpu() - own

        async def measure() -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name, port in ports.items():
                raw = requests[name]
                await closed_loop(port, lambda r=raw: r, concurrency, 2.0)  # warm-up
                out[f"{name}_rate"] = await phase(name, fixed_rate(port, raw, rate, seconds))
                out[f"{name}_tput"] = await phase(
                    name, closed_loop(port, lambda r=raw: r, concurrency, seconds)
                )
            body = orjson.dumps({"agreement_ids": [2, 4], "addition_ids": [201]})
            sync = _post(f"/v1/clients/{CLIENT}/sync", token, body)
            out["commands"] = await closed_loop(gateway_port, lambda: sync, concurrency, seconds)
            return out

        labels = {"gateway": "gateway GET /v1/clients/{c}/catalog", "uncached": "gateway, catalog cache off",
                  "bare": "bare ASGI, same SQL"}  # fmt: skip

        def cpu(name: str, key: str, requests_done: int) -> str:
            _, server_s, own_s = results[key]
            return (f"    cpu: {name} {1000 * server_s / max(requests_done, 1):.2f} ms/request, "
                    f"load generator {100 * own_s / seconds:.0f} % of a core")  # fmt: skip

        results = asyncio.run(measure())
        print(f"catalog at a fixed {rate} requests/s for {seconds:.0f} s (open loop):")
        for name in ports:
            latencies = results[f"{name}_rate"][0]
            print(_line(labels[name], latencies))
            print(cpu(name, f"{name}_rate", len(latencies)))
        print(f"catalog throughput at {concurrency} in flight for {seconds:.0f} s (closed loop):")
        for name in ports:
            rps, latencies = results[f"{name}_tput"][0]
            print(_line(labels[name], latencies, rps))
            print(cpu(name, f"{name}_tput", len(latencies)))
        gw_rps, gw_lat = results["gateway_tput"][0]
        uncached_rps, uncached_lat = results["uncached_tput"][0]
        bare_rps, bare_lat = results["bare_tput"][0]
        cmd_rps, cmd_lat = results["commands"]
        print(f"command POSTs at {concurrency} in flight (publish acks=all + PostgreSQL record):")
        print(_line("gateway POST /v1/clients/{c}/sync", cmd_lat, cmd_rps))
        for name, rps in (("gateway", gw_rps), ("uncached", uncached_rps)):
            p99 = _percentile(results[f"{name}_rate"][0], 0.99)
            print(f"{labels[name]}: goal catalog p99 <= 50 ms at {rate}/s: {'met' if p99 <= 50 else 'NOT met'} "
                  f"({p99:.1f} ms); goal throughput >= 50 % of bare: {'met' if rps >= 0.5 * bare_rps else 'NOT met'} "
                  f"({100 * rps / bare_rps:.0f} %)")  # fmt: skip
        print(f"  median catalog latency at {concurrency} in flight, gateway / cache off / bare: "
              f"{statistics.median(gw_lat):.2f} / {statistics.median(uncached_lat):.2f} / "
              f"{statistics.median(bare_lat):.2f} ms; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
        report("gateway_catalog_throughput", gw_rps, "req/s", bare_rps, goal="(goal ratio >= 0.50)")
        report(
            "gateway_catalog_throughput_cache_off",
            uncached_rps,
            "req/s",
            bare_rps,
            goal="(goal ratio >= 0.50)",
        )
    finally:
        group.stop()
        unseed(database_url, tenant)
        asyncio.run(_topics(bootstrap, topics, create=False))
