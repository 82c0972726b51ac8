"""A real mapper worker process on the real broker, and helpers to talk to it over Kafka.

Each `MapperWorker` runs `python -m services.mapper` with its own topic prefix (fresh topics with
2 partitions), app id (consumer group + state changelog) and health port; `wait_ready()` polls
`/readyz`. Tests produce with aiokafka and read the output topics from the beginning.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import RecordMetadata

from schemas.envelope import CloudEvent
from schemas.topics import PSA_AGREEMENTS, SYNC_COMMANDS, TOPICS
from services.common.kafka import ensure_topics
from services.common.settings import KafkaSettings

PARTITIONS = 2
READY_DEADLINE_S = 120.0  # first start includes topic metadata, group join and recovery on 2 busy cores
REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def create_topics(bootstrap: str, prefix: str) -> None:
    specs = [dataclasses.replace(spec, name=f"{prefix}{spec.name}") for spec in TOPICS]
    await ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), specs, partitions=PARTITIONS)


async def delete_topics(bootstrap: str, name_prefix: str) -> None:
    """Remove every topic whose name starts with `name_prefix` (the run's topics and changelog)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(name_prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


@dataclasses.dataclass
class Received:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]

    def json(self) -> Any:
        return json.loads(self.value)


class MapperWorker:
    def __init__(
        self, bootstrap: str, prefix: str, app_id: str, workdir: Path, store: str = "memory://"
    ) -> None:
        self.bootstrap = bootstrap
        self.store = store
        self.prefix = prefix
        self.app_id = app_id
        self.workdir = workdir
        self.log = workdir / f"{app_id}.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def topic(self, canonical: str) -> str:
        return f"{self.prefix}{canonical}"

    def start(self) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "MAPPER_TOPIC_PREFIX": self.prefix,
            "MAPPER_APP_ID": self.app_id,
            "MAPPER_PARTITIONS": str(PARTITIONS),
            "MAPPER_DATADIR": str(self.workdir / "data"),
            "MAPPER_STORE": self.store,
            "MAPPER_BATCH_WITHIN_S": "0.02",
            "HEALTH_PORT": str(self.port),
            "HEALTH_HOST": "127.0.0.1",
            "LOG_LEVEL": "INFO",
        }
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.mapper", "--no-create-topics"],
                env=env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as answer:
            text: str = answer.read().decode()
            return text

    async def wait_ready(self, timeout_s: float = READY_DEADLINE_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not await asyncio.to_thread(self.ready):
            assert self.process is not None and self.process.poll() is None, (
                f"worker exited:\n{self.log_tail()}"
            )
            assert time.monotonic() < deadline, f"worker not ready in {timeout_s} s:\n{self.log_tail()}"
            await asyncio.sleep(0.3)

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after 60 s); returns the exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        return process.returncode

    def kill(self) -> None:
        """SIGKILL and wait: nothing is flushed or closed."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=30)

    def metric(self, name: str) -> dict[str, float]:
        """Every sample of one metric from /metrics: its label text -> value."""
        samples: dict[str, float] = {}
        for line in self.metrics().splitlines():
            if line.startswith(name):
                labels, _, value = line[len(name) :].rpartition(" ")
                samples[labels] = float(value)
        return samples

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # -------------------------------------------------------------------------------- Kafka I/O

    async def send(self, *events: CloudEvent) -> list[RecordMetadata]:
        items = [
            (self.topic(SYNC_COMMANDS if e.type.startswith(("sync.command", "contract.command")) else PSA_AGREEMENTS),
             e.key, e.to_bytes())
            for e in events
        ]  # fmt: skip
        return await self.send_raw(*items)

    async def send_raw(self, *items: tuple[str, bytes | None, bytes]) -> list[RecordMetadata]:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            return [await producer.send_and_wait(topic, value, key=key) for topic, key, value in items]
        finally:
            await producer.stop()

    async def wait_processed(self, *sent: RecordMetadata, timeout_s: float = 90.0) -> None:
        """Wait until the worker committed past these messages. Messages on different topics have
        no order between them, so a test that needs one handled before another waits here."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.app_id, enable_auto_commit=False
        )
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout_s
            for meta in sent:
                tp = TopicPartition(meta.topic, meta.partition)
                while ((await consumer.committed(tp)) or 0) <= meta.offset:
                    assert time.monotonic() < deadline, (
                        f"{tp}@{meta.offset} not processed:\n{self.log_tail()}"
                    )
                    await asyncio.sleep(0.3)
        finally:
            await consumer.stop()

    async def collect(
        self,
        canonical_topics: list[str],
        until: Callable[[list[Received]], bool],
        *,
        accept: Callable[[Received], bool] = lambda _: True,
        timeout_s: float = 90.0,
    ) -> list[Received]:
        """Read the topics from the beginning until `until(accepted)` holds; fails with the log on timeout."""
        consumer = AIOKafkaConsumer(
            *(self.topic(t) for t in canonical_topics),
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        accepted: list[Received] = []
        try:
            deadline = time.monotonic() + timeout_s
            while not until(accepted):
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"timed out; got {[(r.topic, r.value[:120]) for r in accepted]}\n"
                        f"worker log:\n{self.log_tail()}"
                    )
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    for record in records:
                        received = Received(
                            record.topic[len(self.prefix) :], record.key, record.value, dict(record.headers)
                        )
                        if accept(received):
                            accepted.append(received)
        finally:
            await consumer.stop()
        return accepted
