"""The mapper with `MAPPER_STORE=rocksdb://` as a real worker process on the real broker.

A SIGKILLed worker restarted on the same data directory keeps every kind of state (snapshots for
later selects, linked items, removals, auto-sync flags) and reads back only the changelog records
written after its local checkpoint: here exactly one, appended to the changelog while it was down
(as another owner of the partition would have), which it applies. The memory store, restarted
the same way, reads the whole changelog again.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "mapper"))

from mapper_factories import agreement_removed, select, set_auto_sync, snapshot
from mapper_worker import PARTITIONS, MapperWorker, Received, create_topics, delete_topics

from schemas.topics import CONTRACT_RECORDS, DEADLETTER, SYNC_EVENTS

OUTPUTS = [CONTRACT_RECORDS, SYNC_EVENTS, DEADLETTER]
RECOVERED = "contract_sync_mapper_state_recovered_records_total"
RECOVERED_FROM = "contract_sync_mapper_state_recovery_from_offset"


def _changelog(app_id: str) -> str:
    return f"{app_id}-state-changelog"


async def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: int(offset) for tp, offset in ends.items()}
    finally:
        await consumer.stop()


def _partition_of(client_key: bytes) -> int:
    """The partition Kafka's default partitioner gives a client's messages (and its state)."""
    partitions = list(range(PARTITIONS))
    return int(DefaultPartitioner()(client_key, partitions, partitions))


def _by_partition(samples: dict[str, float]) -> dict[int, float]:
    return {int(labels.split('"')[1]): value for labels, value in samples.items()}


def _of(name: str, client: str) -> Callable[[Received], bool]:
    key = f"{name}:{client}".encode()
    return lambda r: r.key == key


def _records(received: list[Received]) -> list[dict[str, object]]:
    return [r.json() for r in received if r.topic == CONTRACT_RECORDS]


def _rejections(received: list[Received]) -> list[dict[str, object]]:
    return [
        doc
        for r in received
        if r.topic == SYNC_EVENTS and (doc := r.json())["type"] == "sync.command.rejected"
    ]


@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
async def test_a_sigkilled_worker_keeps_its_state_and_reads_back_only_the_changelog_tail(
    kafka_bootstrap: str, tmp_path: Path, store: str
) -> None:
    run = uuid.uuid4().hex[:8]
    app_id = f"it-mapper-rocks-{run}"
    prefix = f"{app_id}."
    await create_topics(kafka_bootstrap, prefix)
    mapper = MapperWorker(kafka_bootstrap, prefix, app_id, tmp_path, store=store)
    name = f"t{run}"
    manual, auto, later = "100", "200", "300"  # three clients of the tenant
    try:
        mapper.start()
        await mapper.wait_ready()
        sent = await mapper.send(
            snapshot(1, [11, 12], tenant=name, client=manual),
            snapshot(2, [21], tenant=name, client=manual),
            snapshot(3, [31], tenant=name, client=manual),
            select([1], [11], tenant=name, client=manual),  # links agreement 1 and addition 11
            agreement_removed(2, tenant=name, client=manual),
            set_auto_sync(True, tenant=name, client=auto),
        )
        await mapper.wait_processed(*sent)
        first = await mapper.collect(OUTPUTS, lambda r: len(_records(r)) >= 2, accept=_of(name, manual))
        assert {d["data"]["contract_key"] for d in _records(first)} == {  # type: ignore[index]
            f"cw:{name}:agreement:1",
            f"cw:{name}:addition:11",
        }
        await asyncio.sleep(1.5)  # the last batch's local write follows its changelog acknowledgement
        mapper.kill()

        changelog = _changelog(app_id)
        before = await _end_offsets(kafka_bootstrap, changelog)
        # while it is down, the changelog gets one record it has not seen: auto-sync on for `later`
        tail_partition = _partition_of(f"{name}:{later}".encode())
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                changelog, b"1", key=f'"{name}:{later}|auto"'.encode(), partition=tail_partition
            )
        finally:
            await producer.stop()

        mapper.start()
        await mapper.wait_ready()
        recovered = _by_partition(mapper.metric(RECOVERED))
        started_at = _by_partition(mapper.metric(RECOVERED_FROM))
        if store == "rocksdb://":
            # only the tail: each partition from its checkpoint = the end before the kill
            assert started_at == {p: float(before[p]) for p in range(PARTITIONS)}
            assert recovered == {p: (1.0 if p == tail_partition else 0.0) for p in range(PARTITIONS)}
        else:
            # the memory store keeps nothing: the whole changelog is read again
            assert started_at == {p: 0.0 for p in range(PARTITIONS)}
            assert sum(recovered.values()) == sum(before.values()) + 1

        await mapper.send(
            agreement_removed(1, tenant=name, client=manual),  # linked: agreement 1 + addition 11 retire
            select([2], tenant=name, client=manual),  # removed before the kill: not in the catalog
            select([3], [31], tenant=name, client=manual),  # observed before the kill: maps
            select([4], tenant=name, client=auto),  # auto-sync stayed on: rejected whole
            snapshot(5, [51], tenant=name, client=auto),  # auto-sync on: maps as observed
            snapshot(6, [], tenant=name, client=later),  # auto-sync on from the changelog tail: maps
        )
        manual_out = await mapper.collect(
            OUTPUTS,
            lambda r: len(_records(r)) >= 6 and len(_rejections(r)) >= 1,
            accept=_of(name, manual),
        )
        restarted = manual_out  # retirements, agreement 3 and rejections only follow the restart
        retired = {
            d["data"]["contract_key"]  # type: ignore[index]
            for d in _records(restarted)
            if d["type"] == "contract.record.retired"
        }
        assert retired == {f"cw:{name}:agreement:1", f"cw:{name}:addition:11"}  # 12 was never linked
        mapped_now = {
            d["data"]["contract_key"]  # type: ignore[index]
            for d in _records(restarted)
            if d["type"] == "contract.record.mapped"
        }
        assert {f"cw:{name}:agreement:3", f"cw:{name}:addition:31"} <= mapped_now
        assert [(d["data"]["reason"], d["data"]["agreement_ids"]) for d in _rejections(restarted)] == [  # type: ignore[index]
            ("not_in_catalog", [2])
        ]

        auto_out = await mapper.collect(
            OUTPUTS, lambda r: len(_records(r)) >= 2 and len(_rejections(r)) >= 1, accept=_of(name, auto)
        )
        assert [d["data"]["reason"] for d in _rejections(auto_out)] == ["auto_sync_enabled"]  # type: ignore[index]
        assert {d["data"]["contract_key"] for d in _records(auto_out)} == {  # type: ignore[index]
            f"cw:{name}:agreement:5",
            f"cw:{name}:addition:51",
        }
        later_out = await mapper.collect(OUTPUTS, lambda r: len(_records(r)) >= 1, accept=_of(name, later))
        assert [d["data"]["contract_key"] for d in _records(later_out)] == [f"cw:{name}:agreement:6"]  # type: ignore[index]
    finally:
        code = await asyncio.to_thread(mapper.stop)
        await delete_topics(kafka_bootstrap, app_id)
    assert code == 0, mapper.log_tail()
