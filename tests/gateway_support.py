"""Helpers for the gateway tests: a gateway process on the real stack, tokens (good and forged),
an SSE reader, and a tail of the commands the gateway published.

- `GatewayProcess`: `contract-sync gateway` as a child process on a free port with a JWKS file of
  its own and the given topics; `start()` returns once `/readyz` answers 200; `stop()` leaves no
  process behind.
- `TokenFactory`: real ES256 tokens signed with the gateway's key (`token(...)`), plus every kind of
  bad token the gateway must refuse (expired, not yet valid, wrong issuer/audience/key, `alg: none`,
  HS256 keyed with the public key).
- `SseReader`: reads `/v1/events` in a background thread and keeps each event (id, type, JSON).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.common.db.roles import OWNER, READER, role_url
from services.common.db.tables import catalog_items, client_sync_settings, contracts
from services.gateway.local_issuer import LocalKeys, ensure_keys, mint_token
from services.gateway.settings import SCOPES
from services.launcher.group import ProcessGroup, contract_sync_command, free_port, wait_until

ISSUER = "contract-sync-tests"
AUDIENCE = "contract-sync-gateway-tests"


class GatewayProcess:
    def __init__(
        self,
        work_dir: Path,
        *,
        kafka_bootstrap: str,
        database_url: str,
        commands_topic: str,
        events_topic: str,
        group_id: str,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.keys = ensure_keys(work_dir / "keys")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "DATABASE_URL": role_url(database_url, READER),  # the gateway's own, least-privileged role
            "GATEWAY_JWKS_FILE": str(self.keys.jwks_path),
            "GATEWAY_ISSUER": ISSUER,
            "GATEWAY_AUDIENCE": AUDIENCE,
            "GATEWAY_PORT": str(self.port),
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_COMMANDS_TOPIC": commands_topic,
            "GATEWAY_EVENTS_TOPIC": events_topic,
            "GATEWAY_OUTCOMES_GROUP_ID": group_id,
            "GATEWAY_SSE_HEARTBEAT_SECONDS": "1",
            "GATEWAY_RATE_LIMIT_PER_SECOND": "1000",
            "GATEWAY_RATE_LIMIT_BURST": "1000",
            "LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.group = ProcessGroup(work_dir / "logs", self.env, grace_s=15)

    def start(self, timeout_s: float = 60) -> None:
        self.group.start("gateway", contract_sync_command("gateway"))
        member = self.group.members["gateway"]

        def ready() -> bool:
            return member.alive() and httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200

        if not wait_until(ready, timeout_s=timeout_s, interval_s=0.3):
            tail = member.log_tail()
            self.stop()
            raise RuntimeError(f"gateway not ready within {timeout_s:.0f} s:\n{tail}")

    def stop(self) -> None:
        self.group.stop()

    def log_tail(self) -> str:
        member = self.group.members.get("gateway")
        return member.log_tail(60) if member else ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenFactory:
    keys: LocalKeys
    issuer: str = ISSUER
    audience: str = AUDIENCE

    def claims(self, tenant: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": f"user@{tenant}",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "tenant_id": tenant,
            "scope": " ".join(SCOPES),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, tenant: str, scopes: list[str] | None = None, subject: str | None = None) -> str:
        return mint_token(
            self.keys,
            tenant_id=tenant,
            subject=subject or f"user@{tenant}",
            scopes=list(SCOPES) if scopes is None else scopes,
            issuer=self.issuer,
            audience=self.audience,
            ttl_seconds=600,
        )

    def signed(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.keys.private_key, algorithm="ES256", headers={"kid": self.keys.kid})

    def bad_tokens(self, tenant: str) -> dict[str, str]:
        """Every refused kind of token, by name."""
        now = int(time.time())
        other_key = ec.generate_private_key(ec.SECP256R1())
        public_pem = self.keys.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        claims = self.claims(tenant)
        payload = _b64(json.dumps(claims).encode())
        none_header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": self.keys.kid}).encode())
        hs_header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.keys.kid}).encode())
        hs_signature = _b64(hmac.new(public_pem, f"{hs_header}.{payload}".encode(), hashlib.sha256).digest())
        return {
            "expired": self.signed(self.claims(tenant, iat=now - 7200, nbf=now - 7200, exp=now - 3600)),
            "not_yet_valid": self.signed(self.claims(tenant, nbf=now + 3600, exp=now + 7200)),
            "wrong_issuer": self.signed(self.claims(tenant, iss="https://evil.example")),
            "wrong_audience": self.signed(self.claims(tenant, aud="another-api")),
            "wrong_key": jwt.encode(claims, other_key, algorithm="ES256", headers={"kid": self.keys.kid}),
            "alg_none": f"{none_header}.{payload}.",
            "hs256_with_public_key": f"{hs_header}.{payload}.{hs_signature}",
            "no_tenant": self.signed(self.claims(tenant, tenant_id=None)),
            "garbage": "not-a-token",
        }


@dataclass
class SseEvent:
    id: str | None
    type: str | None
    data: dict[str, Any]


@dataclass
class SseReader:
    """Reads a `/v1/events` stream in a thread; `events` grows as events arrive."""

    url: str
    token: str
    last_event_id: str | None = None
    events: list[SseEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self, timeout_s: float = 30) -> SseReader:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self.connected.wait(timeout_s):
            raise RuntimeError(f"SSE stream did not connect: {self.error!r}")
        return self

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=30)) as client,
                client.stream("GET", f"{self.url}/v1/events", headers=headers) as response,
            ):
                if response.status_code != 200:
                    self.error = RuntimeError(f"status {response.status_code}: {response.read()!r}")
                    self.connected.set()
                    return
                event: dict[str, str] = {}
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(":"):
                        self.comments.append(line[1:].strip())
                        if line[1:].strip() == "connected":
                            self.connected.set()
                    elif line == "":
                        if "data" in event:
                            self.events.append(
                                SseEvent(event.get("id"), event.get("event"), json.loads(event["data"]))
                            )
                        event = {}
                    else:
                        name, _, value = line.partition(":")
                        event[name] = value[1:] if value.startswith(" ") else value
        except BaseException as error:  # reported by the test
            self.error = error
            self.connected.set()

    def close(self) -> None:
        self._stop.set()

    def wait_for(self, predicate: Any, timeout_s: float = 30) -> list[SseEvent]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [e for e in list(self.events) if predicate(e)]
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"no matching SSE event within {timeout_s} s (error={self.error!r})")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes"}


def iter_lines(text: str) -> Iterator[str]:
    yield from text.splitlines()


# ------------------------------------------------------------------------------------------------
# the integration tests' rig: one gateway, two seeded tenants, topics of its own

PARTITIONS = 3


@dataclass
class Seeded:
    tenant: str
    clients: list[str]
    agreement_key: str
    addition_key: str
    new_agreement_key: str


@dataclass
class GatewayRig:
    gateway: GatewayProcess
    tokens: TokenFactory
    a: Seeded
    b: Seeded
    kafka_bootstrap: str
    commands_topic: str
    events_topic: str
    engine: sa.Engine

    @property
    def url(self) -> str:
        return self.gateway.url

    def published_commands(self) -> list[dict[str, Any]]:
        """Every command on the gateway's commands topic so far."""
        return [json.loads(v) for v in asyncio.run(_read_all(self.kafka_bootstrap, self.commands_topic))]

    def produce_events(self, events: list[dict[str, Any]]) -> None:
        asyncio.run(_produce(self.kafka_bootstrap, self.events_topic, events))


async def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        values: list[bytes] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(timeout_ms=1000)
            values.extend(r.value or b"" for records in batch.values() for r in records)
        return values
    finally:
        await consumer.stop()


async def _produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic, json.dumps(event).encode(), key=event["subject"].encode())
    finally:
        await producer.stop()


async def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=PARTITIONS, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


def seed(engine: sa.Engine, tenant: str, clients: list[str], auto_sync_client: str | None) -> Seeded:
    now = datetime.now(UTC)
    older = now - timedelta(days=2)
    agreement_key = f"cw:{tenant}:agreement:1"
    addition_key = f"cw:{tenant}:addition:11"
    new_key = f"cw:{tenant}:agreement:2"
    main_client = clients[0]
    with engine.begin() as conn:
        conn.execute(
            sa.insert(catalog_items),
            [
                {
                    "contract_key": agreement_key, "tenant_id": tenant, "client_id": main_client,
                    "kind": "agreement", "agreement_id": 1, "addition_id": None, "name": f"Managed {tenant}",
                    "summary": {"bill_amount": "100.00", "currency": "USD", "billing_cycle": "Monthly",
                                "start_date": "2024-01-01T00:00:00Z"},
                    "psa_last_updated": older, "observed_at": now,
                },
                {
                    "contract_key": addition_key, "tenant_id": tenant, "client_id": main_client,
                    "kind": "addition", "agreement_id": 1, "addition_id": 11, "name": "Backup seats",
                    "summary": {"quantity": "12", "less_included": "0", "unit_price": "5.00",
                                "bill_customer": "Billable", "effective_date": "2024-01-01T00:00:00Z"},
                    "psa_last_updated": now, "observed_at": now,
                },
                {
                    "contract_key": new_key, "tenant_id": tenant, "client_id": main_client,
                    "kind": "agreement", "agreement_id": 2, "addition_id": None, "name": "New agreement",
                    "summary": {"bill_amount": "10.00", "currency": "USD"},
                    "psa_last_updated": now, "observed_at": now,
                },
            ]
            + [
                {
                    "contract_key": f"cw:{tenant}:agreement:{100 + i}", "tenant_id": tenant, "client_id": client,
                    "kind": "agreement", "agreement_id": 100 + i, "addition_id": None, "name": f"Other {client}",
                    "summary": {}, "psa_last_updated": now, "observed_at": now,
                }
                for i, client in enumerate(clients[1:])
            ],
        )  # fmt: skip
        common = {"tenant_id": tenant, "client_id": main_client, "psa": "connectwise", "psa_synced": True,
                  "psa_last_updated": older, "status": "active", "billing_currency": "USD",
                  "billing_cycle": "monthly", "psa_start_date": datetime(2024, 1, 1).date(),
                  "start_date": datetime(2024, 1, 1).date(), "category": "recurring",
                  "explanation": {"status": "agreementStatus Active -> active"}}  # fmt: skip
        conn.execute(
            sa.insert(contracts),
            [
                {**common, "contract_key": agreement_key, "kind": "agreement", "agreement_id": 1, "addition_id": None,
                 "parent_contract_key": None,
                 "name": f"Managed {tenant}", "psa_name": f"Managed {tenant}", "billing_amount": "100.00"},
                {**common, "contract_key": addition_key, "kind": "addition", "agreement_id": 1, "addition_id": 11,
                 "parent_contract_key": agreement_key, "name": "Backup seats", "psa_name": "Backup seats",
                 "billing_amount": "50.00"},
            ],
        )  # fmt: skip
        rows = [{"tenant_id": tenant, "client_id": main_client, "auto_sync": False, "last_synced_at": older}]
        if auto_sync_client:
            rows.append(
                {
                    "tenant_id": tenant,
                    "client_id": auto_sync_client,
                    "auto_sync": True,
                    "last_synced_at": None,
                }
            )
        conn.execute(sa.insert(client_sync_settings), rows)
    return Seeded(tenant, clients, agreement_key, addition_key, new_key)


def unseed(engine: sa.Engine, tenant: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f'SET LOCAL ROLE "{OWNER}"'))  # only the owner deletes synced contracts
        for table in ("contracts", "catalog_items", "client_sync_settings", "gateway_commands",
                      "gateway_command_events"):  # fmt: skip
            conn.execute(sa.text(f"DELETE FROM {table} WHERE tenant_id = :t"), {"t": tenant})
