"""In-memory adapters for the poller's ports (store, publisher) and an in-process simulator client.

The fakes keep the ports' contracts: the publisher acknowledges (or fails) each send through the
awaitable it returns, and the store keeps watermarks monotonic, like the PostgreSQL adapter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from pydantic import SecretStr

from devtools.cwsim.app import SimConfig, Simulator
from schemas.envelope import CloudEvent
from services.poller.changes import KnownAgreement
from services.poller.connectwise import ConnectWiseClient, ConnectWiseConnection
from services.poller.store import Cursor


class InMemoryStore:
    def __init__(self) -> None:
        self.snapshots: dict[tuple[str, int], KnownAgreement] = {}
        self.cursors: dict[tuple[str, str], Cursor] = {}
        self.known_queries: list[set[int] | None] = []  # the ids each known_agreements call asked for

    async def known_agreements(
        self, tenant_id: str, agreement_ids: Iterable[int] | None = None
    ) -> dict[int, KnownAgreement]:
        wanted = None if agreement_ids is None else set(agreement_ids)
        self.known_queries.append(wanted)
        return {
            aid: rec
            for (tid, aid), rec in self.snapshots.items()
            if tid == tenant_id and (wanted is None or aid in wanted)
        }

    async def save_snapshots(self, tenant_id: str, records: Sequence[KnownAgreement]) -> None:
        for record in records:
            if record.digest is not None:  # like PostgresPollerStore: nothing to remember without one
                self.snapshots[(tenant_id, record.agreement_id)] = record

    async def forget_agreements(self, tenant_id: str, agreement_ids: Iterable[int]) -> None:
        for agreement_id in agreement_ids:
            self.snapshots.pop((tenant_id, agreement_id), None)

    async def get_cursor(self, tenant_id: str, scope: str) -> Cursor:
        return self.cursors.get((tenant_id, scope), Cursor(scope))

    async def set_cursor(
        self, tenant_id: str, scope: str, watermark: datetime | None, last_run: dict[str, Any]
    ) -> None:
        previous = self.cursors.get((tenant_id, scope), Cursor(scope))
        if watermark is None or (previous.watermark is not None and previous.watermark > watermark):
            watermark = previous.watermark
        self.cursors[(tenant_id, scope)] = Cursor(scope, watermark, dict(last_run))


@dataclass
class RecordingPublisher:
    """Acknowledges every send at once, or fails sends once `fail_after` events were acknowledged."""

    sent: list[tuple[str, CloudEvent]] = field(default_factory=list)
    fail_after: int | None = None

    async def send(self, topic: str, event: CloudEvent) -> Awaitable[Any]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            future.set_exception(ConnectionError("broker unavailable"))
        else:
            self.sent.append((topic, event))
            future.set_result(None)
        return future

    def of_type(self, event_type: str) -> list[CloudEvent]:
        return [event for _, event in self.sent if event.type == event_type]

    def clear(self) -> None:
        self.sent.clear()


def make_simulator(**overrides: Any) -> Simulator:
    options: dict[str, Any] = {"companies": 3, "agreements_per_company": 4, "additions_per_agreement": 2}
    options.update(overrides)
    return Simulator(SimConfig(**options))


def sim_client(simulator: Simulator, **connection: Any) -> ConnectWiseClient:
    """A ConnectWise client talking to `simulator` in process (no socket)."""
    config = simulator.config
    conn = ConnectWiseConnection(
        site=config.public_url,
        company_id=config.company_id,
        public_key=SecretStr(config.public_key),
        private_key=SecretStr(config.private_key),
        client_id=SecretStr(config.client_id),
        codebase=config.codebase,
        requests_per_minute=connection.pop("requests_per_minute", 1_000_000),
        max_attempts=connection.pop("max_attempts", 2),
        backoff_initial=0.0,
        **connection,
    )
    return ConnectWiseClient(conn, transport=httpx.ASGITransport(app=simulator))
