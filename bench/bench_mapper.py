"""Mapper throughput: observed agreements (5 additions each) -> contract records, Kafka to Kafka.

Measured in one run, on fresh topics (`bench-<id>.` prefix, 4 partitions), with auto-sync on:

1. the mapper: one real faust worker process (`contract-sync mapper`, memory store). Auto-sync is
   switched on for every client first (worker started, `sync.auto_sync.changed` awaited, worker
   stopped), then N observed agreements are produced as a backlog and the worker is started
   again; it recovers its state table and maps the backlog (6 records per agreement, 3 state
   changelog writes, batched produce).
2. a raw aiokafka loop over the same backlog doing the same work without faust and without state,
   printed with its ratio: consume -> the mapper's input parse (`services.mapper.state.parse_input`:
   the compiled decoder of `schemas.fast`) -> `map_items_fields` -> `schemas.fast.encode_mapped`
   (the mapper's hot path) -> produce the same 6 records per agreement, with the same batched
   producer the mapper uses (so that ratio isolates what faust, the state table and its changelog cost).
3. a ceiling, printed only: raw aiokafka consume -> parse -> produce one message per input
   (no mapping), to show what the mapping itself costs.
4. the baseline of the final JSON line, the Kafka I/O floor: raw aiokafka consume -> produce the
   same 6 records per input (copies of one encoded record), no parse, no mapping: what Kafka I/O
   alone allows on this box (goal: the mapper at >= 0.60 of it).

Throughput of each = agreements / (last output timestamp - first output timestamp), so start-up,
group joins and table recovery are excluded alike. N = env `BENCH_MAPPER_AGREEMENTS` (default 20,000);
`BENCH_MAPPER_PROFILE=<file>` runs the measured worker under cProfile (its figures then include
the profiler's overhead).
Needs Kafka (`KAFKA_BOOTSTRAP_SERVERS`, default the local stack). Topics are deleted at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.report import report
from schemas.commands import SetAutoSyncCommand, SetAutoSyncData
from schemas.fast import ObservedEvent, encode_mapped
from schemas.psa import AgreementObserved, AgreementObservedData
from schemas.topics import CONTRACT_RECORDS, PSA_AGREEMENTS, SYNC_COMMANDS, SYNC_EVENTS, TOPICS
from services.common.kafka import CONTENT_TYPE_HEADER, ensure_topics
from services.common.settings import KafkaSettings
from services.mapper.mapping import MappingError, map_items_fields
from services.mapper.messages import parse_input
from services.mapper.output_producer import OutMessage, OutputProducer
from services.mapper.settings import MapperSettings

PARTITIONS = 4
CLIENTS = 200
ADDITIONS = 5
TENANT = "bench"
GOAL = "(goal >= 5,000 agreements/s on a quiet machine and >= 0.60 of the Kafka I/O floor)"


def _observed(i: int, now: datetime) -> AgreementObserved:
    agreement_id = 100_000 + i
    client = str(1000 + i % CLIENTS)
    info = {"lastUpdated": "2026-03-14T16:02:11Z", "updatedBy": "jsmith"}
    agreement = {
        "id": agreement_id,
        "name": f"Client {client} - Managed Services {i}",
        "type": {"id": 5, "name": "Managed Services", "_info": {"type_href": "https://cw.example/types/5"}},
        "company": {"id": int(client), "identifier": f"C{client}", "name": f"Company {client}"},
        "contact": {"id": 812, "name": "Jane Doe"},
        "startDate": "2025-01-01T00:00:00Z",
        "endDate": "2027-12-31T00:00:00Z",
        "noEndingDateFlag": False,
        "cancelledFlag": False,
        "applicationUnits": "Amount",
        "applicationCycle": "CalendarMonth",
        "billingCycle": {"id": 2, "name": "Monthly"},
        "billOneTimeFlag": False,
        "billingTerms": {"id": 1, "name": "Net 30 days"},
        "invoicingCycle": "ContractYear",
        "billAmount": 1500.0 + i % 100,
        "taxable": True,
        "prorateFlag": True,
        "billTime": "Billable",
        "billExpenses": "Billable",
        "billProducts": "Billable",
        "currency": {"id": 7, "symbol": "$", "currencyCode": "USD", "name": "US Dollars"},
        "agreementStatus": "Active",
        "invoiceDescription": "Managed services, monthly",
        "_info": info,
        "customFields": [{"id": 12, "caption": "Contract Ref", "type": "Text", "value": f"C-{i}"}],
    }
    additions = [
        {
            "id": agreement_id * 10 + n,
            "product": {"id": 300 + n, "identifier": f"SKU-{n}", "serializedFlag": False},
            "quantity": 10.0 + n,
            "lessIncluded": 2.0,
            "unitPrice": 22.5,
            "unitCost": 18.5,
            "billCustomer": "Billable",
            "effectiveDate": "2025-01-01T00:00:00Z",
            "taxableFlag": True,
            "agreementId": agreement_id,
            "description": f"Line {n} of agreement {agreement_id}",
            "uom": "Each",
            "extPrice": 100.0,
            "agreementStatus": "Active",
            "_info": info,
        }
        for n in range(ADDITIONS)
    ]
    data = AgreementObservedData.model_validate(
        {
            "tenant_id": TENANT,
            "client_id": client,
            "agreement": agreement,
            "additions": additions,
            "psa_last_updated": "2026-03-14T16:02:11Z",
            "observed_at": now.isoformat(),
            "time_zone": "America/New_York",
        }
    )
    return AgreementObserved.build(data, source="contract-sync/poller")


def _typical_record(event: AgreementObserved) -> bytes:
    """One encoded `contract.record.mapped` of `event` (an addition's: most records are)."""
    ids = [a.id for a in event.data.additions]
    fields = map_items_fields(event.data, agreement=False, addition_ids=ids[:1])[0]
    assert not isinstance(fields, MappingError)
    return encode_mapped(fields, source="bench/raw", time=datetime.now(UTC))


async def _produce(bootstrap: str, items: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=8 << 20,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in items]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _wait_outputs(
    bootstrap: str,
    topic: str,
    expected: int,
    deadline_s: float,
    accept: Callable[[bytes], bool] | None = None,
) -> tuple[int, float]:
    """Consume `topic` from the start until `expected` messages; returns (count, seconds first->last)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    count, first, last = 0, None, None
    try:
        end = time.monotonic() + deadline_s
        while count < expected and time.monotonic() < end:
            for records in (await consumer.getmany(timeout_ms=500, max_records=20_000)).values():
                for record in records:
                    if accept is not None and not accept(record.value):
                        continue
                    count += 1
                    first = record.timestamp if first is None else min(first, record.timestamp)
                    last = record.timestamp if last is None else max(last, record.timestamp)
    finally:
        await consumer.stop()
    span = ((last or 0) - (first or 0)) / 1000
    return count, span


async def _wait_done(
    bootstrap: str, group: str, topic: str, total: int, records: str, expected: int, deadline_s: float
) -> None:
    """Poll (1 s apart) until the group's committed offsets on `topic` sum to `total` and the
    `records` topic holds `expected` messages. Both: a committed offset alone does not prove the
    work is done (the mapper may re-read input that faust skipped, see services/mapper/positions.py)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        end = time.monotonic() + deadline_s
        sinks = [TopicPartition(records, p) for p in range(PARTITIONS)]
        while time.monotonic() < end:
            offsets = [await consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)]
            if sum(o or 0 for o in offsets) >= total:
                written = await consumer.end_offsets(sinks)
                if sum(written.values()) >= expected:
                    return
            await asyncio.sleep(1.0)
        raise RuntimeError(f"the worker did not map {total} messages of {topic} in {deadline_s} s")
    finally:
        await consumer.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_worker(
    bootstrap: str, prefix: str, app_id: str, workdir: Path, log: Path, port: int = 0, profile: str = ""
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MAPPER_TOPIC_PREFIX": prefix,
        "MAPPER_APP_ID": app_id,
        "MAPPER_PARTITIONS": str(PARTITIONS),
        "MAPPER_DATADIR": str(workdir / "data"),
        "LOG_LEVEL": os.environ.get("BENCH_MAPPER_LOG_LEVEL", "WARNING"),
        "HEALTH_PORT": str(port or _free_port()),
    }
    out = log.open("ab")
    profiler = ["-m", "cProfile", "-o", profile] if profile else []
    return subprocess.Popen(
        [sys.executable, *profiler, "-m", "services.mapper", "--no-create-topics"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _cpu_when_ready(process: subprocess.Popen[bytes], port: int, deadline_s: float = 180) -> float:
    """Wait for the worker's /readyz (table recovered), then return its CPU seconds so far."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /readyz HTTP/1.0\r\n\r\n")
            status = await reader.readline()
            writer.close()
            if b" 200 " in status:
                return _cpu_seconds(process.pid)
        except OSError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError("worker never became ready")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def _raw_loop(
    bootstrap: str, source: str, sink: str, n: int, *, mapping: bool, io_only: bytes | None = None
) -> None:
    """The baseline: aiokafka consume -> parse -> (map) -> produce, with the mapper's own batched
    producer (`OutputProducer`: per-partition record batches, deliveries awaited per batch).

    `io_only`: neither parse nor map; produce `1 + ADDITIONS` copies of these bytes per input
    (the Kafka I/O alone, same message count and sizes as the mapping run)."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=8 << 20,
    )
    output = OutputProducer(KafkaSettings(bootstrap_servers=bootstrap), MapperSettings())
    await consumer.start()
    await output.start()
    done = 0
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            messages: list[OutMessage] = []
            for records in batch.values():
                for record in records:
                    if io_only is not None:
                        messages.extend(
                            OutMessage(sink, record.key, io_only, [CONTENT_TYPE_HEADER])
                            for _ in range(1 + ADDITIONS)
                        )
                        done += 1
                        continue
                    event = parse_input(PSA_AGREEMENTS, record.value)
                    assert isinstance(event, ObservedEvent)  # the fast path, as in the mapper
                    if mapping:
                        ids = [a.id for a in event.data.additions]
                        now = datetime.now(UTC)
                        for result in map_items_fields(event.data, agreement=True, addition_ids=ids):
                            assert not isinstance(result, MappingError)
                            value = encode_mapped(result, source="bench/raw", time=now)
                            messages.append(OutMessage(sink, event.key, value, [CONTENT_TYPE_HEADER]))
                    else:
                        messages.append(OutMessage(sink, event.key, record.value, [CONTENT_TYPE_HEADER]))
                    done += 1
            if messages:
                await output.produce_all(messages)
            await consumer.commit()
    finally:
        await consumer.stop()
        await output.stop()


async def _delete_topics(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [
            t for t in await admin.list_topics() if t.startswith(prefix) or t.startswith(f"{prefix}mapper")
        ]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


async def _run(n: int, profile: str = "") -> None:
    kafka = KafkaSettings()
    bootstrap = kafka.bootstrap_servers
    run_id = uuid.uuid4().hex[:8]
    prefix = f"bench-{run_id}."
    app_id = f"bench-{run_id}.mapper"
    specs = [dataclasses.replace(spec, name=f"{prefix}{spec.name}") for spec in TOPICS]
    extra = [
        dataclasses.replace(spec, name=f"{prefix}raw-{kind}")
        for spec in TOPICS[:1]
        for kind in ("mapped", "ceiling", "io")
    ]
    await ensure_topics(kafka, [*specs, *extra], partitions=PARTITIONS)
    workdir = Path(tempfile.mkdtemp(prefix="bench-mapper-"))
    print(f"machine load (1/5/15 min) at start: {os.getloadavg()} on {os.cpu_count()} cores", flush=True)
    log = workdir / "worker.log"
    try:
        now = datetime.now(UTC) - timedelta(minutes=1)
        print(
            f"building {n:,} observed agreements ({ADDITIONS} additions each) over {CLIENTS} clients ...",
            flush=True,
        )
        events = [_observed(i, now) for i in range(n)]
        values = [(e.key, e.to_bytes()) for e in events]
        size = sum(len(v) for _, v in values) / len(values)
        print(f"mean input message {size:,.0f} bytes", flush=True)

        # phase 1: auto-sync on for every client, acknowledged by a running worker
        commands = [
            SetAutoSyncCommand.build(
                SetAutoSyncData(
                    tenant_id=TENANT, client_id=str(1000 + c), enabled=True, requested_by="bench"
                ),
                source="bench",
            )
            for c in range(CLIENTS)
        ]
        await _produce(bootstrap, [(f"{prefix}{SYNC_COMMANDS}", c.key, c.to_bytes()) for c in commands])
        worker = _start_worker(bootstrap, prefix, app_id, workdir, log)
        try:
            count, _ = await _wait_outputs(bootstrap, f"{prefix}{SYNC_EVENTS}", CLIENTS, 180)
            if count < CLIENTS:
                raise RuntimeError(f"only {count}/{CLIENTS} auto-sync acknowledgements; log {log}")
        finally:
            await asyncio.to_thread(_stop, worker)

        # phase 2: the backlog, then the worker maps it
        await _produce(bootstrap, [(f"{prefix}{PSA_AGREEMENTS}", k, v) for k, v in values])
        expected = n * (1 + ADDITIONS)
        port = _free_port()
        worker = _start_worker(bootstrap, prefix, app_id, workdir, log, port, profile=profile)
        try:
            cpu_start = await _cpu_when_ready(worker, port)
            # only cheap offset polls while it runs: reading 6N records now would steal its CPU
            await _wait_done(
                bootstrap,
                app_id,
                f"{prefix}{PSA_AGREEMENTS}",
                n,
                f"{prefix}{CONTRACT_RECORDS}",
                expected,
                max(180, n / 50),
            )
            mapper_cpu = _cpu_seconds(worker.pid) - cpu_start
        finally:
            await asyncio.to_thread(_stop, worker)
        count, span = await _wait_outputs(bootstrap, f"{prefix}{CONTRACT_RECORDS}", expected, 120)
        if count < expected:
            raise RuntimeError(f"mapper produced {count}/{expected} records; log {log}")
        mapper_rate = n / span
        print(
            f"faust mapper: {n:,} agreements -> {count:,} records in {span:.2f} s = {mapper_rate:,.0f} agreements/s"
            f" (worker CPU {mapper_cpu / n * 1e6:,.0f} us/agreement = {n / mapper_cpu:,.0f}/s per busy core)"
        )

        # the baseline: same backlog, raw aiokafka, same mapping and records
        sink = f"{prefix}raw-mapped"
        raw_cpu = time.process_time()
        await _raw_loop(bootstrap, f"{prefix}{PSA_AGREEMENTS}", sink, n, mapping=True)
        raw_cpu = time.process_time() - raw_cpu
        count, span = await _wait_outputs(bootstrap, sink, expected, 120)
        raw_rate = n / span
        print(f"raw loop CPU {raw_cpu / n * 1e6:,.0f} us/agreement = {n / raw_cpu:,.0f}/s per busy core")
        print(
            f"raw aiokafka consume->parse->map->produce: {count:,} records in {span:.2f} s = {raw_rate:,.0f} agreements/s"
        )

        # the ceiling: parse and re-produce, no mapping
        sink = f"{prefix}raw-ceiling"
        await _raw_loop(bootstrap, f"{prefix}{PSA_AGREEMENTS}", sink, n, mapping=False)
        count, span = await _wait_outputs(bootstrap, sink, n, 120)
        ceiling = n / span
        print(f"raw aiokafka consume->parse->produce (no mapping): {ceiling:,.0f} agreements/s")
        print(f"mapper vs ceiling: {mapper_rate / ceiling:.2f}")

        # the I/O floor: consume and produce the same 6 records per input, no parse, no mapping
        sink = f"{prefix}raw-io"
        record_bytes = _typical_record(events[0])
        await _raw_loop(bootstrap, f"{prefix}{PSA_AGREEMENTS}", sink, n, mapping=False, io_only=record_bytes)
        count, span = await _wait_outputs(bootstrap, sink, expected, 120)
        io_floor = n / span
        print(
            f"raw aiokafka consume->produce {1 + ADDITIONS} records of {len(record_bytes):,} bytes"
            f" (no parse, no mapping): {io_floor:,.0f} agreements/s"
        )
        print(f"mapper vs raw loop: {mapper_rate / raw_rate:.2f}")
        print(f"machine load at end: {os.getloadavg()}")
        report("mapper_throughput", mapper_rate, "agreements/s", io_floor, goal=GOAL)
    finally:
        await _delete_topics(bootstrap, prefix)


def main() -> None:
    n = int(os.environ.get("BENCH_MAPPER_AGREEMENTS", "20000"))
    asyncio.run(_run(n, os.environ.get("BENCH_MAPPER_PROFILE", "")))


if __name__ == "__main__":
    main()
