"""The mapper's own input positions with a real faust worker on the real broker.

The consumer group's committed offset is not what decides what the mapper handles: its state
table's positions are (services/mapper/positions.py). Input the group acknowledged without the
mapper handling it (what faust's fetcher can do around recovery and seeks) is read again, and
input the mapper already handled is not mapped twice when the group's offset goes backwards.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections import Counter
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "mapper"))

from mapper_factories import set_auto_sync, snapshot
from mapper_worker import MapperWorker, Received, create_topics, delete_topics

from schemas.topics import CONTRACT_RECORDS, SYNC_EVENTS


def _records(received: list[Received]) -> Counter[str]:
    return Counter(r.json()["data"]["contract_key"] for r in received if r.topic == CONTRACT_RECORDS)


async def _commit(bootstrap: str, group: str, tp: TopicPartition, offset: int) -> None:
    """Move the (idle) group's committed offset of `tp`, as a consumer that acknowledged it would."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: offset})
        assert await consumer.committed(tp) == offset
    finally:
        await consumer.stop()


async def test_input_the_group_skipped_is_mapped_and_input_already_handled_is_not_mapped_again(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    prefix = f"it-mapper-pos-{run}."
    await create_topics(kafka_bootstrap, prefix)
    mapper = MapperWorker(kafka_bootstrap, prefix, f"it-mapper-pos-{run}", tmp_path)
    name = f"t{uuid.uuid4().hex[:10]}"
    key = lambda n: f"cw:{name}:agreement:{n}"  # noqa: E731
    mine = lambda r: r.key is not None and r.key.startswith(f"{name}:".encode())  # noqa: E731
    try:
        mapper.start()
        await mapper.wait_ready()
        await mapper.send(set_auto_sync(True, tenant=name))
        first = await mapper.send(snapshot(1, [11], tenant=name))
        await mapper.collect([CONTRACT_RECORDS, SYNC_EVENTS], lambda r: len(_records(r)) >= 2, accept=mine)
        await mapper.wait_processed(*first)
        assert await asyncio.to_thread(mapper.stop) == 0, mapper.log_tail()

        # While the worker is down, two snapshots arrive and the group's offset is moved past
        # them: acknowledged, never handled.
        skipped = await mapper.send(snapshot(2, [21], tenant=name), snapshot(3, [31], tenant=name))
        tp = TopicPartition(skipped[-1].topic, skipped[-1].partition)
        await _commit(kafka_bootstrap, mapper.app_id, tp, skipped[-1].offset + 1)

        mapper.start()
        await mapper.wait_ready()
        got = await mapper.collect(
            [CONTRACT_RECORDS], lambda r: {key(2), key(3)} <= set(_records(r)), accept=mine
        )
        assert "input skipped upstream: read again by the mapper" in mapper.log.read_text()
        assert await asyncio.to_thread(mapper.stop) == 0, mapper.log_tail()

        # The group's offset goes back to the start: everything is delivered again, and nothing
        # already handled is mapped a second time; a new snapshot still maps once.
        await _commit(kafka_bootstrap, mapper.app_id, tp, 0)
        mapper.start()
        await mapper.wait_ready()
        await mapper.send(snapshot(4, [41], tenant=name))
        got = await mapper.collect([CONTRACT_RECORDS], lambda r: key(4) in _records(r), accept=mine)
        assert await asyncio.to_thread(mapper.stop) == 0, mapper.log_tail()
        counts = _records(got)
        assert set(counts) == {key(n) for n in (1, 2, 3, 4)} | {
            f"cw:{name}:addition:{n}" for n in (11, 21, 31, 41)
        }
        assert max(counts.values()) == 1, counts
    finally:
        await asyncio.to_thread(mapper.stop)
        await delete_topics(kafka_bootstrap, f"it-mapper-pos-{run}")
