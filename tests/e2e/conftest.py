"""The session's running pipeline for the end-to-end tests (see e2e_support.py for the helpers)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from e2e_support import E2E, KafkaTail, TailRecord

from schemas.topics import DEADLETTER, SYNC_EVENTS, TOPICS
from services.demo.pipeline import LocalPipeline, PipelineOptions


def _process_group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _cleanup_kafka(bootstrap: str, tenant: str) -> None:
    """Delete the topics this tenant's pipeline created (the mapper's changelog). Its consumer groups
    stay until the broker expires their offsets (aiokafka's admin cannot delete groups)."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            topics = [t for t in await admin.list_topics() if tenant in t]
            if topics:
                with contextlib.suppress(Exception):
                    await admin.delete_topics(topics)
        finally:
            await admin.close()

    with contextlib.suppress(Exception):
        asyncio.run(run())


def _wait_for_topics(bootstrap: str, names: list[str], timeout_s: float = 60.0) -> None:
    """Until every topic has all its partitions led in the broker's metadata: a faust worker that
    starts before its topic is visible ignores it until the next rebalance."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                cluster = await consumer._client.fetch_all_metadata()
                missing = [
                    name
                    for name in names
                    if not cluster.partitions_for_topic(name)
                    or any(
                        cluster.leader_for_partition(TopicPartition(name, p)) in (None, -1)
                        for p in cluster.partitions_for_topic(name) or ()
                    )
                ]
                if not missing:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"topics not ready after {timeout_s:.0f} s: {missing}")
                await asyncio.sleep(0.2)
        finally:
            await consumer.stop()

    asyncio.run(run())


@pytest.fixture(scope="session")
def e2e(kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    """The session's pipeline on topics of its own (`{tenant}.psa.agreements.v1`, ...: the registry's
    specs under a prefix). Every pipeline's mapper and writer handle every tenant on the topics they
    read, so on the shared v1 topics a concurrent run (another suite, the demo) would also handle
    this session's commands and emit a second outcome event for each; and a new consumer group
    would first replay the topics' whole history."""
    import dataclasses

    from services.common.kafka import ensure_topics
    from services.common.settings import KafkaSettings

    tenant = f"e2e-{secrets.token_hex(4)}"
    topic_prefix = f"{tenant}."
    asyncio.run(
        ensure_topics(
            KafkaSettings(bootstrap_servers=kafka_bootstrap),
            [dataclasses.replace(spec, name=f"{topic_prefix}{spec.name}") for spec in TOPICS],
        )
    )
    _wait_for_topics(kafka_bootstrap, [f"{topic_prefix}{spec.name}" for spec in TOPICS])
    key_prefix = f"{tenant}:".encode()

    def ours(record: TailRecord) -> bool:
        return (record.key or b"").startswith(key_prefix) or tenant.encode() in record.value

    events_tail = KafkaTail(kafka_bootstrap, f"{topic_prefix}{SYNC_EVENTS}", ours)
    deadletter_tail = KafkaTail(kafka_bootstrap, f"{topic_prefix}{DEADLETTER}", ours)
    pipeline = LocalPipeline(
        PipelineOptions(
            tenant_id=tenant,
            work_dir=Path(tmp_path_factory.mktemp("e2e-pipeline")),
            kafka_bootstrap=kafka_bootstrap,
            database_url=database_url,
            seed=7,
            companies=3,
            agreements_per_company=4,
            additions_per_agreement=3,
            poll_interval="3s",
            auto_sync_interval="1s",
            reconcile_interval="3s",
            unique_groups=True,
            topic_prefix=topic_prefix,
        )
    )
    harness = E2E(pipeline, events_tail, deadletter_tail)
    try:
        pipeline.start()
        yield harness
    finally:
        pids = [m.pid for m in pipeline.group.members.values() if m.pid]
        pipeline.stop()
        events_tail.close()
        deadletter_tail.close()
        _cleanup_kafka(kafka_bootstrap, tenant)
        engine = sa.create_engine(database_url)
        with engine.begin() as connection:
            for table in ("poller_snapshots", "poller_cursors"):
                connection.execute(sa.text(f"DELETE FROM {table} WHERE tenant_id = :t"), {"t": tenant})
        engine.dispose()
        left = [pid for pid in pids if not _process_group_gone(pid)]
        assert not left, f"processes of the pipeline left running after stop(): {left}"
        assert not any(pipeline.alive().values()), pipeline.alive()
