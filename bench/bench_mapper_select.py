"""One big select on a big client: the command costs what it names, never what the store holds.

Measured in one run:

1. in process, `services.mapper.state.decide` over an `IndexedStore` holding one client with
   AGREEMENTS agreements of 5 additions each (200,000 additions): a `sync.command.select` of
   SELECTED additions (spread over SELECTED / 5 agreements) -> CPU milliseconds
   (`time.process_time`, best of 3). The baseline of the final JSON line: the same select on a
   store that holds only the selected agreements, so ratio ~1 means the store's size does not
   matter. Printed too: the index lookups alone (every owner of the select), and what the
   previous full-key scan per addition id cost for a few ids, extrapolated to the whole select.
2. a real worker (`contract-sync mapper`, memory store, fresh `bench-<id>.` topics): the same
   store built from psa.agreements.v1, then the select sent on sync.commands.v1; `/healthz` is
   asked every 20 ms from the moment the select is sent until its records are all written,
   and the slowest answer is printed (goal: within 1 s throughout), with the worker's CPU.

Sizes: env `BENCH_SELECT_AGREEMENTS` (default 40,000) and `BENCH_SELECT_ADDITIONS` (default 10,000).
Part 2 needs Kafka (`KAFKA_BOOTSTRAP_SERVERS`, default the local stack); `BENCH_SELECT_WORKER=0` skips it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.bench_mapper import (
    PARTITIONS,
    _cpu_seconds,
    _cpu_when_ready,
    _delete_topics,
    _free_port,
    _produce,
    _start_worker,
    _stop,
    _wait_done,
    _wait_outputs,
)
from bench.report import report
from schemas.commands import SelectCommand, SelectData
from schemas.psa import AgreementObserved, AgreementObservedData
from schemas.topics import CONTRACT_RECORDS, PSA_AGREEMENTS, SYNC_COMMANDS, TOPICS
from services.common.kafka import ensure_topics
from services.common.settings import KafkaSettings
from services.mapper.client_state import IndexedStore, ItemState
from services.mapper.messages import Incoming
from services.mapper.state import decide

TENANT = "bench"
CLIENT = "4242"
ADDITIONS = 5
GOAL = "ms of CPU (goal <= 50 ms; ratio ~1: independent of the store's size)"


def _observed(agreement_id: int, now: datetime) -> AgreementObserved:
    info = {"lastUpdated": "2026-03-14T16:02:11Z"}
    agreement = {
        "id": agreement_id,
        "name": f"Managed Services {agreement_id}",
        "type": {"id": 5, "name": "Managed Services"},
        "company": {"id": int(CLIENT), "identifier": f"C{CLIENT}", "name": "Big Client"},
        "startDate": "2025-01-01T00:00:00Z",
        "endDate": "2027-12-31T00:00:00Z",
        "noEndingDateFlag": False,
        "cancelledFlag": False,
        "billingCycle": {"id": 2, "name": "Monthly"},
        "billAmount": 1500.0,
        "currency": {"id": 7, "currencyCode": "USD", "name": "US Dollars"},
        "agreementStatus": "Active",
        "_info": info,
    }
    additions = [
        {
            "id": agreement_id * 10 + n,
            "product": {"id": 300 + n, "identifier": f"SKU-{n}"},
            "quantity": 10.0 + n,
            "lessIncluded": 2.0,
            "unitPrice": 22.5,
            "unitCost": 18.5,
            "billCustomer": "Billable",
            "effectiveDate": "2025-01-01T00:00:00Z",
            "agreementId": agreement_id,
            "agreementStatus": "Active",
            "_info": info,
        }
        for n in range(ADDITIONS)
    ]
    data = AgreementObservedData.model_validate(
        {
            "tenant_id": TENANT,
            "client_id": CLIENT,
            "agreement": agreement,
            "additions": additions,
            "psa_last_updated": "2026-03-14T16:02:11Z",
            "observed_at": now.isoformat(),
        }
    )
    return AgreementObserved.build(data, source="contract-sync/poller")


def _select(addition_ids: list[int]) -> SelectCommand:
    return SelectCommand.build(
        SelectData(
            tenant_id=TENANT,
            client_id=CLIENT,
            agreement_ids=[],
            addition_ids=addition_ids,
            requested_by="bench",
        ),
        source="bench",
    )


def _fill(store: IndexedStore, values: list[tuple[bytes, bytes]]) -> None:
    for offset, (key, value) in enumerate(values):
        decide(store, Incoming(PSA_AGREEMENTS, 0, offset, key, value))


def _select_cpu_ms(store: IndexedStore, command: SelectCommand, runs: int = 3) -> tuple[float, int]:
    """Best CPU time of `runs` decisions of `command` over copies of `store` (each run starts from
    the same state: nothing linked yet), and how many outputs one produced."""
    raw = command.to_bytes()
    best, outputs = float("inf"), 0
    for _ in range(runs):
        copy = IndexedStore(dict(store.data))
        started = time.process_time()
        decision = decide(copy, Incoming(SYNC_COMMANDS, 0, 0, command.key, raw))
        best = min(best, time.process_time() - started)
        outputs = len(decision.outputs)
    return best * 1000, outputs


def _old_scan_owner(store: IndexedStore, client: str, addition_id: int) -> int | None:
    """What `owner_of` did before the index: copy every key of the store, decode each item."""
    prefix = f"{client}|i|"
    for agreement_id in sorted(int(k[len(prefix) :]) for k in list(store.keys()) if k.startswith(prefix)):
        raw = store.get(f"{prefix}{agreement_id}")
        if raw is not None and addition_id in ItemState.decode(raw).additions:
            return agreement_id
    return None


def _in_process(values: list[tuple[bytes, bytes]], selected: list[int], chosen: int) -> tuple[float, float]:
    store = IndexedStore()
    started = time.perf_counter()
    _fill(store, values)
    print(
        f"store: {len(values):,} agreements, {len(values) * ADDITIONS:,} additions of one client, "
        f"{len(store):,} keys (filled in {time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    command = _select(selected)
    value, outputs = _select_cpu_ms(store, command)
    print(f"select of {len(selected):,} additions: {value:,.1f} ms CPU, {outputs:,} outputs", flush=True)

    small = IndexedStore()
    _fill(small, values[:chosen])
    baseline, _ = _select_cpu_ms(small, command)
    print(f"same select, store of only the {chosen:,} selected agreements: {baseline:,.1f} ms CPU")

    client = f"{TENANT}:{CLIENT}"
    started = time.process_time()
    owners = [store.index.owner(client, a) for a in selected]
    lookups = (time.process_time() - started) * 1000
    assert all(o is not None for o in owners)
    print(f"index lookups of all {len(selected):,} owners: {lookups:,.2f} ms CPU")
    sample = selected[-3:]
    started = time.process_time()
    for addition_id in sample:
        _old_scan_owner(store, client, addition_id)
    per_id = (time.process_time() - started) / len(sample)
    print(
        f"before the index (full-key scan per id): {per_id * 1000:,.0f} ms per id, "
        f"~{per_id * len(selected):,.0f} s for the whole select (extrapolated from {len(sample)} ids)",
        flush=True,
    )
    return value, baseline


async def _probe(port: int, stop: asyncio.Event, latencies: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
            await asyncio.wait_for(reader.read(), 10)
            writer.close()
        except (OSError, TimeoutError):
            latencies.append(10.0)
        else:
            latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.02)


async def _with_worker(values: list[tuple[bytes, bytes]], selected: list[int]) -> None:
    kafka = KafkaSettings()
    bootstrap = kafka.bootstrap_servers
    run_id = uuid.uuid4().hex[:8]
    prefix = f"bench-{run_id}."
    app_id = f"bench-{run_id}.mapper"
    await ensure_topics(
        kafka, [dataclasses.replace(s, name=f"{prefix}{s.name}") for s in TOPICS], partitions=PARTITIONS
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-select-"))
    log = workdir / "worker.log"
    try:
        await _produce(bootstrap, [(f"{prefix}{PSA_AGREEMENTS}", k, v) for k, v in values])
        port = _free_port()
        worker = _start_worker(bootstrap, prefix, app_id, workdir, log, port)
        try:
            await _cpu_when_ready(worker, port)
            await _wait_done(
                bootstrap, app_id, f"{prefix}{PSA_AGREEMENTS}", len(values),
                f"{prefix}{CONTRACT_RECORDS}", 0, max(180, len(values) / 50),
            )  # fmt: skip
            command = _select(selected)
            latencies: list[float] = []
            stop = asyncio.Event()
            probe = asyncio.create_task(_probe(port, stop, latencies))
            cpu_before = _cpu_seconds(worker.pid)
            sent = time.perf_counter()
            await _produce(bootstrap, [(f"{prefix}{SYNC_COMMANDS}", command.key, command.to_bytes())])
            count, _ = await _wait_outputs(bootstrap, f"{prefix}{CONTRACT_RECORDS}", len(selected), 120)
            elapsed = time.perf_counter() - sent
            cpu = _cpu_seconds(worker.pid) - cpu_before
            stop.set()
            await probe
        finally:
            await asyncio.to_thread(_stop, worker)
        if count < len(selected):
            raise RuntimeError(f"worker mapped {count}/{len(selected)} selected additions; log {log}")
        print(
            f"worker: select of {len(selected):,} additions on {len(values) * ADDITIONS:,} stored ones -> "
            f"{count:,} records in {elapsed:.2f} s, worker CPU {cpu * 1000:,.0f} ms (includes producing them)"
        )
        print(
            f"worker /healthz during the select: {len(latencies)} probes, slowest {max(latencies) * 1000:,.0f} ms "
            f"(goal <= 1,000 ms)",
            flush=True,
        )
    finally:
        await _delete_topics(bootstrap, prefix)


def main() -> None:
    agreements = int(os.environ.get("BENCH_SELECT_AGREEMENTS", "40000"))
    wanted = int(os.environ.get("BENCH_SELECT_ADDITIONS", "10000"))
    chosen = max(1, wanted // ADDITIONS)
    now = datetime.now(UTC)
    print(f"building {agreements:,} observed agreements of one client ...", flush=True)
    values = [(e.key, e.to_bytes()) for e in (_observed(1_000_000 + i, now) for i in range(agreements))]
    selected = [(1_000_000 + i) * 10 + n for i in range(chosen) for n in range(ADDITIONS)][:wanted]
    value, baseline = _in_process(values, selected, chosen)
    if os.environ.get("BENCH_SELECT_WORKER", "1") != "0":
        asyncio.run(_with_worker(values, selected))
    report("mapper_select_10k_cpu", value, "ms", baseline, goal=GOAL)


if __name__ == "__main__":
    main()
