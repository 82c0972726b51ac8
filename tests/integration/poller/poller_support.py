"""Helpers for the poller's integration tests: a Kafka tap that reads back what the poller produced
(real broker, per-tenant filtering), tenants.toml writers, and poller process management."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from devtools.cwsim.testing import SimHandle
from schemas.envelope import CloudEvent
from schemas.topics import PSA_AGREEMENTS, SYNC_EVENTS, parse
from services.common.kafka import ensure_topics
from services.common.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[3]


def unique_tenant(prefix: str = "it") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class KafkaTap:
    """Reads `psa.agreements.v1` and `sync.events.v1` from the offsets current at `start()`."""

    def __init__(self, bootstrap: str, topics: Iterable[str] = (PSA_AGREEMENTS, SYNC_EVENTS)) -> None:
        self.bootstrap = bootstrap
        self.topics = tuple(topics)
        self.events: list[CloudEvent] = []
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        await ensure_topics(KafkaSettings(bootstrap_servers=self.bootstrap))
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        parts: list[TopicPartition] = []
        async with asyncio.timeout(30):
            while len(parts) < len(self.topics) or not all(parts):
                cluster = await consumer._client.fetch_all_metadata()  # topics may have just been created
                found = {t: sorted(cluster.partitions_for_topic(t) or ()) for t in self.topics}
                if all(found.values()):
                    parts = [TopicPartition(t, p) for t, ps in found.items() for p in ps]
                    break
                await asyncio.sleep(0.2)
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for part in parts:
            await consumer.position(part)  # materialise the end offsets now, before anything is produced
        self._consumer = consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def _drain(self) -> None:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
        for tp, messages in batches.items():
            for message in messages:
                if message.value is not None:
                    self.events.append(parse(tp.topic, message.value))

    async def wait_for(
        self, tenant_id: str, predicate: Callable[[list[CloudEvent]], bool], deadline_s: float = 30.0
    ) -> list[CloudEvent]:
        """Events of `tenant_id` once `predicate` holds on them; raises TimeoutError otherwise."""
        async with asyncio.timeout(deadline_s):
            while True:
                mine = self.of(tenant_id)
                if predicate(mine):
                    return mine
                await self._drain()

    async def settle(self, seconds: float = 1.0) -> None:
        """Read whatever arrives for `seconds` (to show that nothing more comes)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            await self._drain()

    def of(self, tenant_id: str, event_type: str | None = None) -> list[CloudEvent]:
        return [
            e for e in self.events if e.tenantid == tenant_id and (event_type is None or e.type == event_type)
        ]

    def observed_ids(self, tenant_id: str) -> list[int]:
        return [e.data.agreement.id for e in self.of(tenant_id, "psa.agreement.observed")]  # type: ignore[attr-defined]


def write_tenants_toml(path: Path, sim: SimHandle, tenant_id: str, **options: object) -> dict[str, str]:
    """A tenants.toml for one tenant on `sim`; returns the env vars holding its secrets."""
    return write_tenants_toml_for(path, sim, [tenant_id], **options)


def write_tenants_toml_for(
    path: Path, sim: SimHandle, tenant_ids: Iterable[str], **options: object
) -> dict[str, str]:
    """A tenants.toml with one tenant per id, all on `sim` (same options); returns the env vars
    holding their secrets."""
    lines: list[str] = []
    secrets: dict[str, str] = {}
    for tenant_id in tenant_ids:
        prefix = "CS_" + tenant_id.upper().replace("-", "_")
        lines += [
            "[[tenants]]",
            f'id = "{tenant_id}"',
            f'site = "{sim.site_url}"',
            f'company_id = "{sim.company_id}"',
        ]
        for key, value in options.items():
            lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
        lines += [
            "[tenants.credentials]",
            f'public_key = {{ env = "{prefix}_PUBLIC" }}',
            f'private_key = {{ env = "{prefix}_PRIVATE" }}',
            f'client_id = {{ env = "{prefix}_CLIENT" }}',
        ]
        secrets |= {
            f"{prefix}_PUBLIC": sim.public_key,
            f"{prefix}_PRIVATE": sim.private_key,
            f"{prefix}_CLIENT": sim.client_id,
        }
    path.write_text("\n".join(lines) + "\n")
    return secrets


def start_poller_process(
    config: Path, secrets: dict[str, str], kafka_bootstrap: str, database_url: str, **env: str
) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        **secrets,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "POLLER_COMMANDS_GROUP": f"it-poller-{uuid.uuid4().hex[:8]}",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.poller", "--config", str(config)],
        cwd=REPO,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
