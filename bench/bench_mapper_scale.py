"""Mapper state at scale: N observed agreements over C clients through one worker, per state store.

For each store (`rocksdb://` first, then `memory://` beside it), on fresh topics (`bench-scale-<id>.`
prefix, 4 partitions) with one real worker process (`contract-sync mapper`):

1. N `psa.agreement.observed` (3 additions each, ~2.7 KB; auto-sync off, so each is stored and
   nothing is mapped: the catalog case) over C clients are produced as a backlog, then the worker
   starts and handles them all (the group's committed offsets reach the end). Printed: agreements/s,
   the worker's resident memory at the end (VmRSS) and its peak (VmHWM), the local store's size
   on disk per agreement, and the bytes one stored agreement takes (its changelog record too).
2. The worker is SIGKILLed. A select of one stored agreement is produced, and the worker is started
   again on the same data directory: the time from its start to that select's first
   `contract.record.mapped` on `contracts.records.v1` is the restart figure (the select's partition
   is recovered first); the time until `/readyz` (every partition recovered) and the changelog
   records read back by then (`contract_sync_mapper_state_recovered_records_total`) are printed too.
   Static group membership (`MAPPER_GROUP_INSTANCE_ID`) lets the restarted worker take its
   partitions back without waiting for the killed one's session to time out.

Goals (issue 19): with rocksdb, resident memory <= 512 MiB at the end and restart -> first new
record <= 30 s for N = 1,000,000 over C = 10,000. The final JSON line is the rocksdb restart time
with the memory store's (same run) as its baseline.
Env: BENCH_SCALE_AGREEMENTS (default 1,000,000), BENCH_SCALE_CLIENTS (default 10,000),
BENCH_SCALE_STORES (default `rocksdb://,memory://`). Needs Kafka (`KAFKA_BOOTSTRAP_SERVERS`,
default the local stack). Topics and data directories are deleted at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.bench_mapper import _delete_topics, _free_port, _observed
from bench.report import report
from schemas.commands import SelectCommand, SelectData
from schemas.topics import CONTRACT_RECORDS, PSA_AGREEMENTS, SYNC_COMMANDS, TOPICS
from services.common.kafka import ensure_topics
from services.common.settings import KafkaSettings
from services.mapper.client_state import ItemState

PARTITIONS = 4
ADDITIONS = 3
TENANT = "bench"
MIB = 1024 * 1024


@dataclass
class Figures:
    store: str
    agreements: int
    handle_s: float = 0.0
    rss_mib: float = 0.0
    peak_rss_mib: float = 0.0
    local_bytes: int = 0
    restart_s: float = 0.0
    ready_s: float = 0.0
    recovered_records: float = 0.0


def _template() -> dict[str, Any]:
    import bench.bench_mapper as base

    previous = base.ADDITIONS
    base.ADDITIONS = ADDITIONS
    try:
        event = _observed(0, datetime.now(UTC))
    finally:
        base.ADDITIONS = previous
    doc: dict[str, Any] = orjson.loads(event.to_bytes())
    return doc


def _message(template: dict[str, Any], i: int, clients: int) -> tuple[bytes, bytes]:
    """The i-th observed agreement (ids unique, client i % clients), as (key, value)."""
    client = str(1000 + i % clients)
    agreement_id = 1_000_000 + i
    doc = {**template, "id": str(uuid.uuid4()), "subject": f"{TENANT}:{client}"}
    data = {**template["data"], "client_id": client}
    agreement = {**data["agreement"], "id": agreement_id, "name": f"Client {client} - Services {i}"}
    agreement["company"] = {**agreement["company"], "id": int(client), "identifier": f"C{client}"}
    data["agreement"] = agreement
    data["additions"] = [
        {**addition, "id": agreement_id * 10 + n, "agreementId": agreement_id}
        for n, addition in enumerate(data["additions"])
    ]
    doc["data"] = data
    return f"{TENANT}:{client}".encode(), orjson.dumps(doc)


async def _produce_backlog(bootstrap: str, topic: str, n: int, clients: int) -> None:
    template = _template()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=50, max_batch_size=1 << 20, compression_type=None
    )
    await producer.start()
    try:
        pending: list[Any] = []
        for i in range(n):
            key, value = _message(template, i, clients)
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _start(bootstrap: str, prefix: str, app_id: str, datadir: Path, store: str, log: Path, port: int) -> Any:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MAPPER_TOPIC_PREFIX": prefix,
        "MAPPER_APP_ID": app_id,
        "MAPPER_PARTITIONS": str(PARTITIONS),
        "MAPPER_DATADIR": str(datadir),
        "MAPPER_STORE": store,
        "MAPPER_GROUP_INSTANCE_ID": f"{app_id}-0",  # the restarted worker takes its partitions back at once
        "LOG_LEVEL": os.environ.get("BENCH_SCALE_LOG_LEVEL", "WARNING"),
        "HEALTH_PORT": str(port),
        "HEALTH_HOST": "127.0.0.1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.mapper", "--no-create-topics"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def _committed_sum(bootstrap: str, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum([(await consumer.committed(TopicPartition(topic, p))) or 0 for p in range(PARTITIONS)])
    finally:
        await consumer.stop()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


async def _first_record_after(
    bootstrap: str, topic: str, start_offsets: dict[TopicPartition, int], marker: bytes
) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        consumer.assign(list(start_offsets))
        for tp, offset in start_offsets.items():
            consumer.seek(tp, offset)
        while True:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                if any(marker in (r.value or b"") for r in records):
                    return
    finally:
        await consumer.stop()


async def _run_store(bootstrap: str, store: str, n: int, clients: int, workdir: Path) -> Figures:
    run = uuid.uuid4().hex[:8]
    prefix, app_id = f"bench-scale-{run}.", f"bench-scale-{run}"
    datadir, log = workdir / f"data-{run}", workdir / f"worker-{run}.log"
    figures = Figures(store, n)
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    specs = [dataclasses.replace(spec, name=f"{prefix}{spec.name}") for spec in TOPICS]
    await ensure_topics(kafka, specs, partitions=PARTITIONS)
    source = f"{prefix}{PSA_AGREEMENTS}"
    try:
        started = time.monotonic()
        await _produce_backlog(bootstrap, source, n, clients)
        print(f"  [{store}] backlog of {n:,} produced in {time.monotonic() - started:.1f} s", flush=True)

        port = _free_port()
        worker = _start(bootstrap, prefix, app_id, datadir, store, log, port)
        started = time.monotonic()
        try:
            while await _committed_sum(bootstrap, app_id, source) < n:
                if worker.poll() is not None:
                    raise RuntimeError(f"worker exited ({worker.returncode}); see {log}")
                await asyncio.sleep(2.0)
            figures.handle_s = time.monotonic() - started
            await asyncio.sleep(2.0)  # the last batch's local write and any compaction settle
            figures.rss_mib = _status_kib(worker.pid, "VmRSS") / 1024
            figures.peak_rss_mib = _status_kib(worker.pid, "VmHWM") / 1024
            figures.local_bytes = _dir_bytes(datadir)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)

        # a new message waits for the restarted worker: a select of one stored agreement
        chosen = 1_000_000 + n // 2
        client = str(1000 + (n // 2) % clients)
        command = SelectCommand.build(
            SelectData(tenant_id=TENANT, client_id=client, agreement_ids=[chosen], requested_by="ui:bench"),
            source="bench",
        )
        records = f"{prefix}{CONTRACT_RECORDS}"
        probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        await probe.start()
        try:
            tps = [TopicPartition(records, p) for p in range(PARTITIONS)]
            ends = {tp: int(offset) for tp, offset in (await probe.end_offsets(tps)).items()}
        finally:
            await probe.stop()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(f"{prefix}{SYNC_COMMANDS}", command.to_bytes(), key=command.key)
        finally:
            await producer.stop()

        waiting = asyncio.create_task(
            _first_record_after(bootstrap, records, ends, f'"agreement_id":{chosen}'.encode())
        )
        await asyncio.sleep(1.0)  # the probe consumer is positioned before the worker starts
        port = _free_port()
        started = time.monotonic()
        worker = _start(bootstrap, prefix, app_id, datadir, store, log, port)
        try:
            await asyncio.wait_for(waiting, timeout=1800)
            figures.restart_s = time.monotonic() - started
            for _ in range(9000):  # every partition recovered (the select's was first)
                if _ready(port):
                    break
                await asyncio.sleep(0.2)
            figures.ready_s = time.monotonic() - started
            figures.recovered_records = _metric(port, "contract_sync_mapper_state_recovered_records_total")
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)
    finally:
        await _delete_topics(bootstrap, app_id)
        shutil.rmtree(datadir, ignore_errors=True)
    return figures


def _item_bytes() -> int:
    """The bytes one stored agreement (its state value: metadata line + snapshot) takes."""
    _key, value = _message(_template(), 0, 1)
    item = ItemState(
        version="2026-03-14T16:02:11+00:00", additions=[10_000_000, 10_000_001, 10_000_002], snapshot=value
    )
    return len(item.encode()) + len(f"{TENANT}:1000|i|1000000")


async def _run(n: int, clients: int, stores: list[str]) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or KafkaSettings().bootstrap_servers
    print(
        f"{n:,} agreements over {clients:,} clients ({ADDITIONS} additions each), one worker, {PARTITIONS} partitions"
    )
    print(f"one stored agreement: {_item_bytes():,} bytes (state value + key)")
    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for store in stores:
            figures = await _run_store(bootstrap, store, n, clients, Path(tmp))
            results.append(figures)
            print(
                f"  [{store}] handled in {figures.handle_s:.1f} s ({n / figures.handle_s:,.0f} agreements/s); "
                f"RSS at the end {figures.rss_mib:,.0f} MiB (peak {figures.peak_rss_mib:,.0f} MiB); "
                f"local store on disk {figures.local_bytes / n:,.0f} B/agreement",
                flush=True,
            )
            print(
                f"  [{store}] SIGKILL -> restart -> first new record mapped: {figures.restart_s:.1f} s "
                f"; every partition recovered (ready) after {figures.ready_s:.1f} s, "
                f"{figures.recovered_records:,.0f} changelog records read back",
                flush=True,
            )
    print()
    print(
        f"{'store':<12} {'agreements/s':>13} {'RSS MiB':>9} {'peak MiB':>9} {'restart s':>10} {'read back':>10}"
    )
    for f in results:
        print(
            f"{f.store:<12} {f.agreements / f.handle_s:>13,.0f} {f.rss_mib:>9,.0f} {f.peak_rss_mib:>9,.0f} "
            f"{f.restart_s:>10.1f} {f.ready_s:>8.1f} {f.recovered_records:>10,.0f}"
        )
    by_store = {f.store: f for f in results}
    rocks, memory = by_store.get("rocksdb://"), by_store.get("memory://")
    if rocks is not None:
        print(
            f"goals at this size (N={n:,}): RSS <= 512 MiB: {'met' if rocks.rss_mib <= 512 else 'NOT met'}; "
            f"restart <= 30 s: {'met' if rocks.restart_s <= 30 else 'NOT met'}"
        )
    if rocks is not None and memory is not None:
        report(
            "mapper_scale.restart_to_first_record_seconds",
            rocks.restart_s,
            "s",
            memory.restart_s,
            goal=f"(rocksdb vs memory://, N={n:,}; goal <= 30 s at 1,000,000)",
        )


def main() -> None:
    n = int(os.environ.get("BENCH_SCALE_AGREEMENTS", "1000000"))
    clients = int(os.environ.get("BENCH_SCALE_CLIENTS", "10000"))
    stores = [
        s.strip()
        for s in os.environ.get("BENCH_SCALE_STORES", "rocksdb://,memory://").split(",")
        if s.strip()
    ]
    asyncio.run(_run(n, clients, stores))


if __name__ == "__main__":
    main()
