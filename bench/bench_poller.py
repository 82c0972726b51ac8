"""Poller benchmarks against the ConnectWise simulator (own process), real Kafka and PostgreSQL.

1. **Import**: a tenant of 10,000 agreements x 5 additions is fully observed into Kafka (every
   `psa.agreement.observed` acknowledged, every snapshot recorded). Goal <= 30 s, no injected
   latency or budget. Baseline (same run): reading the same agreements and additions with the same
   client and concurrency, without building, publishing or recording anything.
2. **Budget**: 1,000 agreements with a 6,000 requests/minute budget (enforced by the simulator, and
   configured as the tenant's budget, no headroom, one second of budget as burst). Goal: import time <= 1.05 x (requests made / budget); the
   baseline is that lower bound, requests made / budget.
3. **Incremental**: on the 10,000-agreement tenant, 1 % of agreements change, then one incremental
   poll. Goal: requests <= ceil(changed/1000) + changed + (sweep share) + 2, where the sweep share is
   the number of agreements the rolling additions sweep re-read in that run. The baseline is that bound.

Needs Kafka and PostgreSQL (`KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL`; defaults: the local stack).
Events go to fresh topics that are deleted at the end; the tenants' rows are deleted too.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from typing import Any

import httpx
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text

from bench.report import report
from devtools.cwsim.testing import SimHandle, run_simulator
from services.common.kafka import new_producer
from services.common.settings import DatabaseSettings, KafkaSettings
from services.poller.connectwise import ConnectWiseClient
from services.poller.publisher import KafkaPublisher
from services.poller.run import RunStats
from services.poller.service import TenantPoller
from services.poller.store import PostgresPollerStore
from services.poller.sweep import expected_share
from services.poller.tenants import TenantConfig, connection_for, parse_config

BIG = (100, 100, 5)  # companies, agreements per company, additions per agreement: 10,000 x 5
SMALL = (10, 100, 5)  # 1,000 agreements
BUDGET_RPM = 6_000
CONCURRENCY = 8


def tenant_for(sim: SimHandle, tenant_id: str, **options: Any) -> tuple[TenantConfig, dict[str, str]]:
    raw: dict[str, Any] = {
        "id": tenant_id,
        "site": sim.site_url,
        "company_id": sim.company_id,
        "codebase": "v4_6_release",
        "concurrency": CONCURRENCY,
        "credentials": {
            "public_key": {"env": "BENCH_CW_PUBLIC"},
            "private_key": {"env": "BENCH_CW_PRIVATE"},
            "client_id": {"env": "BENCH_CW_CLIENT"},
        },
    }
    raw.update(options)
    env = {
        "BENCH_CW_PUBLIC": sim.public_key,
        "BENCH_CW_PRIVATE": sim.private_key,
        "BENCH_CW_CLIENT": sim.client_id,
    }
    return parse_config({"tenants": [raw]}).tenants[0], env


class Rig:
    def __init__(
        self, kafka: KafkaSettings, store: PostgresPollerStore, publisher: KafkaPublisher, run: str
    ) -> None:
        self.kafka, self.store, self.publisher, self.run = kafka, store, publisher, run
        self.psa_topic = f"bench-{run}.psa.agreements.v1"
        self.events_topic = f"bench-{run}.sync.events.v1"

    def poller(self, tenant: TenantConfig, env: dict[str, str]) -> TenantPoller:
        client = ConnectWiseClient(connection_for(tenant, environ=env), tenant_id=tenant.id)
        return TenantPoller(
            tenant,
            client,
            self.publisher,
            self.store,
            psa_topic=self.psa_topic,
            events_topic=self.events_topic,
        )


async def read_only_ceiling(client: ConnectWiseClient) -> tuple[float, int, float]:
    """Seconds to read every agreement and all additions with the same client and concurrency, the
    number of requests, and the CPU seconds this process spent doing it (the simulator runs in its own
    process, so that is the ConnectWise client's CPU: HTTP, JSON, models)."""
    semaphore = asyncio.Semaphore(CONCURRENCY)
    before = client.stats.snapshot().requests
    cpu_before = time.process_time()

    async def additions(agreement_id: int) -> int:
        async with semaphore:
            return len([a async for a in client.list_additions(agreement_id, page_size=1000)])

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        async for agreement in client.list_agreements(page_size=1000, paging="forward-only"):
            assert agreement.id is not None
            tasks.create_task(additions(agreement.id))
    seconds = time.perf_counter() - started
    return seconds, client.stats.snapshot().requests - before, time.process_time() - cpu_before


def httpcore_transport() -> httpx.AsyncBaseTransport:
    """The client's previous transport (httpx's default, httpcore), as the CPU baseline: one pool
    of 8 connections, as each of the previous client's pool shards had."""
    return httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=8, max_keepalive_connections=8))


async def topic_size(kafka: KafkaSettings, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**kafka.client_kwargs())
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        parts = [TopicPartition(topic, p) for p in cluster.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(parts)
        return int(sum(ends.values()))
    finally:
        await consumer.stop()


def print_run(label: str, stats: RunStats, seconds: float) -> None:
    print(
        f"{label}: {seconds:.2f} s, {stats.requests} requests ({stats.throttled} throttled, {stats.retries} retries), "
        f"{stats.seen} seen, {stats.changed} emitted, {stats.swept} swept"
    )


async def bench() -> None:
    load = os.getloadavg()
    print(
        f"machine load average (1/5/15 min): {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs"
    )
    kafka, database = KafkaSettings(), DatabaseSettings()
    run = uuid.uuid4().hex[:8]
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    rig_topics = [f"bench-{run}.psa.agreements.v1", f"bench-{run}.sync.events.v1"]
    await admin.create_topics([NewTopic(t, num_partitions=6, replication_factor=1) for t in rig_topics])
    store = await asyncio.to_thread(PostgresPollerStore.from_url, database.url)
    producer = new_producer(kafka)
    await producer.start()
    rig = Rig(kafka, store, KafkaPublisher(producer), run)
    tenants: list[str] = []
    try:
        # 1. import of 10,000 x 5, and 3. incremental with 1 % changed ------------------------------
        companies, per_company, additions = BIG
        with run_simulator(
            companies=companies,
            agreements_per_company=per_company,
            additions_per_agreement=additions,
            subprocess=True,
            startup_timeout_s=180,
        ) as sim:
            tenant, env = tenant_for(sim, f"bench-{run}-big", requests_per_minute=1_000_000)
            tenants.append(tenant.id)
            per_request: dict[str, float] = {}
            for label, transport in (
                ("httpcore (previous)", httpcore_transport()),
                ("aiohttp (default)", None),
            ):
                baseline_client = ConnectWiseClient(connection_for(tenant, environ=env), transport=transport)
                ceiling_s, ceiling_requests, cpu_s = await read_only_ceiling(baseline_client)
                await baseline_client.aclose()
                per_request[label] = cpu_s / ceiling_requests * 1000
                print(
                    f"read-only ceiling, {label} transport: {ceiling_s:.2f} s for {ceiling_requests} requests, "
                    f"{cpu_s:.2f} s CPU = {per_request[label]:.3f} ms CPU per request"
                )
            report(
                "poller.cw_client_cpu_per_request_ms",
                per_request["aiohttp (default)"],
                "ms",
                per_request["httpcore (previous)"],
                goal="(ConnectWise client CPU per request; goal <= 0.8 ms; baseline: httpcore transport, same run)",
            )
            poller = rig.poller(tenant, env)
            started = time.perf_counter()
            stats = await poller.poll_once()
            import_s = time.perf_counter() - started
            assert stats is not None
            print_run("import 10,000 x 5", stats, import_s)
            in_kafka = await topic_size(kafka, rig.psa_topic)
            known = len(await store.known_agreements(tenant.id))
            print(f"observed events in Kafka: {in_kafka:,}; snapshots recorded: {known:,}")
            assert in_kafka >= 10_000 and known == 10_000, "the import did not observe every agreement"
            report(
                "poller.import_10k_x5_seconds",
                import_s,
                "s",
                ceiling_s,
                goal="(goal <= 30 s; baseline: read-only)",
            )

            changed = 100
            sim.control.touch_agreements(count=changed)
            started = time.perf_counter()
            stats = await poller.poll_once()
            incremental_s = time.perf_counter() - started
            assert stats is not None
            bound = math.ceil(changed / 1000) + changed + stats.swept + 2
            print_run("incremental, 1 % changed", stats, incremental_s)
            print(
                f"bound ceil({changed}/1000) + {changed} + sweep {stats.swept} + 2 = {bound}; "
                f"expected sweep share for a 30 s cadence: {expected_share(10_000, tenant.auto_sync_interval, tenant.additions_sweep_period):.1f}"
            )
            assert stats.changed == changed
            report(
                "poller.incremental_1pct_requests",
                stats.requests,
                "requests",
                bound,
                goal="(goal: ratio <= 1; baseline: the request bound)",
            )
            await poller.client.aclose()

        # 2. 1,000 agreements under a 6,000 requests/minute budget ------------------------------------
        companies, per_company, additions = SMALL
        with run_simulator(
            companies=companies,
            agreements_per_company=per_company,
            additions_per_agreement=additions,
            requests_per_minute=BUDGET_RPM,
            subprocess=True,
        ) as sim:
            # the whole budget, with one second of it as burst so a CPU stall on this shared machine
            # can be caught up (still at most burst + rate x T requests in any T seconds)
            tenant, env = tenant_for(
                sim,
                f"bench-{run}-budget",
                requests_per_minute=BUDGET_RPM,
                rate_limit_headroom=0.0,
                rate_limit_burst=BUDGET_RPM / 60,
            )
            tenants.append(tenant.id)
            poller = rig.poller(tenant, env)
            started = time.perf_counter()
            stats = await poller.poll_once()
            budget_s = time.perf_counter() - started
            assert stats is not None and stats.changed == 1_000
            floor_s = stats.requests / (BUDGET_RPM / 60.0)
            print_run("import 1,000 x 5 at 6,000 requests/minute", stats, budget_s)
            print(f"lower bound: {stats.requests} requests / {BUDGET_RPM} per minute = {floor_s:.2f} s")
            report(
                "poller.budget_import_seconds",
                budget_s,
                "s",
                floor_s,
                goal="(goal: ratio <= 1.05; baseline: requests made / budget)",
            )
            await poller.client.aclose()
    finally:
        await producer.stop()

        def cleanup() -> None:
            with store._engine.begin() as connection:
                for tenant_id in tenants:
                    connection.execute(
                        text("DELETE FROM poller_snapshots WHERE tenant_id = :t"), {"t": tenant_id}
                    )
                    connection.execute(
                        text("DELETE FROM poller_cursors WHERE tenant_id = :t"), {"t": tenant_id}
                    )
            store.dispose()

        await asyncio.to_thread(cleanup)
        try:
            await admin.delete_topics(rig_topics)
        finally:
            await admin.close()


def main() -> None:
    asyncio.run(bench())


if __name__ == "__main__":
    main()
