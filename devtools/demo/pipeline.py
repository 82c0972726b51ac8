"""The whole pipeline on the local stack, as separate processes: the ConnectWise simulator, the
writer, the mapper and the poller. Used by `make demo`, the end-to-end tests and the chaos suite.

It talks to the pipeline only through the wire contract and the operator tools: commands are
published to `sync.commands.v1`, results are read from PostgreSQL and `sync.events.v1`, the
simulator is driven through its control API. `stop()` leaves no process of the pipeline behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from devtools.cwsim.client import SimControl
from schemas.envelope import CloudEvent
from schemas.topics import (
    CONTRACT_RECORDS,
    DEADLETTER,
    PSA_AGREEMENTS,
    SYNC_COMMANDS,
    SYNC_EVENTS,
    TOPICS,
    parse,
)
from services.common.db.roles import SERVICE_ROLES, role_url
from services.common.db.tables import client_sync_settings, contracts
from services.common.kafka import (
    delete_matching,
    ensure_topics,
    new_consumer,
    new_producer,
    partition_leaders,
    publish,
    read_until_end,
    wait_for_leaders,
)
from services.common.settings import KafkaSettings
from services.launcher.group import ProcessGroup, ServiceProcess, contract_sync_command, free_port, wait_until

SIM_COMPANY = "simco"
SIM_PUBLIC_KEY = "cwsimPublicKey01"
SIM_PRIVATE_KEY = "cwsimPrivateKey01"
SIM_CLIENT_ID = "8b9c6f6e-3f57-4d2a-9c3e-6b8d1d2f7a10"
_WRITER_TOPICS = {
    "RECORDS": CONTRACT_RECORDS,
    "PSA": PSA_AGREEMENTS,
    "COMMANDS": SYNC_COMMANDS,
    "EVENTS": SYNC_EVENTS,
    "DEADLETTER": DEADLETTER,
}


@dataclass
class PipelineOptions:
    tenant_id: str
    work_dir: Path
    kafka_bootstrap: str
    database_url: str
    seed: int = 7
    companies: int = 3
    agreements_per_company: int = 4
    additions_per_agreement: int = 3
    poll_interval: str = "10s"
    auto_sync_interval: str = "1s"
    reconcile_interval: str = "1h"
    """How often the poller lists every agreement id to confirm removals (tests use seconds)."""
    callbacks: bool = False
    unique_groups: bool = False
    """Give the writer, mapper and poller consumer groups of their own (tests), instead of the
    default shared ones (the demo and production resume where they left off)."""
    groups_start_at_end: bool = False
    """With `unique_groups`: commit each new group's offsets at the current end of its topics before
    the service starts, so a test pipeline does not replay (and re-apply) every earlier run's
    messages of every tenant; it still sees everything published after it started."""
    topic_prefix: str = ""
    """Run the three services on topics of their own (`{prefix}psa.agreements.v1`, ...; the caller
    creates them): a benchmark's volume then never reaches, nor is replayed by, other pipelines."""
    extra_env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    """Working directory of the simulator and the services (None: this process's)."""
    extra_tenants: tuple[str, ...] = ()
    """More tenants on the same simulator (each sees the same companies under its own contract keys),
    polled every 10 s and reconciled hourly: tests of tenant isolation run with two tenants active."""
    gateway: bool = False
    """Also run the Sync API (`contract-sync gateway`) on the pipeline's topics, verifying tokens
    signed with a key pair under `work_dir/gateway-keys` (`gateway_token()` mints them)."""
    service_principals: bool = False
    """On a secured Kafka (`stack up --secure`): run each service as its own Kafka principal, with the
    credentials `stack env` prints (`<SERVICE>_KAFKA_SASL_USERNAME` / `_PASSWORD` in the environment),
    instead of the environment's `KAFKA_SASL_*` (the admin's). Their ACLs cover the registry's topic
    names and the services' default groups only: use it without `topic_prefix` and `unique_groups`."""
    service_roles: bool = True
    """Connect the writer, the poller and the gateway to PostgreSQL as their own roles (`services.common.db.roles`;
    the local stack's trust authentication needs no passwords), not as `database_url`'s user."""


def service_database_url(options: PipelineOptions, service: str) -> str:
    """The DATABASE_URL a service of the pipeline connects with: its role's (pure)."""
    role = SERVICE_ROLES.get(service)
    if not options.service_roles or role is None:
        return options.database_url
    return role_url(options.database_url, role)


def service_kafka_env(env: Mapping[str, str], service: str) -> dict[str, str]:
    """The `KAFKA_SASL_USERNAME` / `_PASSWORD` of `service`'s own principal, taken from
    `<SERVICE>_KAFKA_SASL_USERNAME` / `_PASSWORD` in `env`; empty when `env` has none (pure)."""
    prefix = f"{service.upper()}_KAFKA_SASL_"
    if not env.get(f"{prefix}USERNAME"):
        return {}
    return {
        "KAFKA_SASL_USERNAME": env[f"{prefix}USERNAME"],
        "KAFKA_SASL_PASSWORD": env.get(f"{prefix}PASSWORD", ""),
    }


def tenants_toml(options: PipelineOptions, sim_site: str) -> str:
    """The poller's tenants file for a simulator-backed tenant (pure)."""
    lines = [
        "[defaults]",
        f'poll_interval = "{options.poll_interval}"',
        f'auto_sync_interval = "{options.auto_sync_interval}"',
        'overlap = "2m"',
        f'reconcile_interval = "{options.reconcile_interval}"',
        "requests_per_minute = 60000",
    ]
    for tenant_id in (options.tenant_id, *options.extra_tenants):
        lines += [
            "",
            "[[tenants]]",
            f'id = "{tenant_id}"',
            f'site = "{sim_site}"',
            f'company_id = "{SIM_COMPANY}"',
            'clients = "all"',
            'time_zone = "UTC"',
            'default_currency = "USD"',
            *(
                []
                if tenant_id == options.tenant_id
                else ['poll_interval = "10s"', 'reconcile_interval = "1h"']  # active, but lighter
            ),
            "[tenants.credentials]",
            'public_key = { env = "SIM_CW_PUBLIC_KEY" }',
            'private_key = { env = "SIM_CW_PRIVATE_KEY" }',
            'client_id = { env = "SIM_CW_CLIENT_ID" }',
        ]
    return "\n".join(lines) + "\n"


class LocalPipeline:
    """Start, observe and stop the simulator and the three services."""

    def __init__(self, options: PipelineOptions) -> None:
        self.options = options
        options.work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = options.work_dir.resolve() / "tenants.toml"
        """The poller's tenants file, also the mapper's and writer's tenant registry: input for any
        other tenant is dead-lettered (`unknown_tenant`) and rejected, never applied."""
        self.env = {
            "KAFKA_BOOTSTRAP_SERVERS": options.kafka_bootstrap,
            "LOG_FORMAT": "json",
            "SIM_CW_PUBLIC_KEY": SIM_PUBLIC_KEY,
            "SIM_CW_PRIVATE_KEY": SIM_PRIVATE_KEY,
            "SIM_CW_CLIENT_ID": SIM_CLIENT_ID,
            "PYTHONUNBUFFERED": "1",
            "MAPPER_TENANTS_FILE": str(self.config_path),
            "WRITER_TENANTS_FILE": str(self.config_path),
            **options.extra_env,
        }
        if options.unique_groups:
            suffix = options.tenant_id
            self.env.update(
                {
                    "WRITER_GROUP_ID": f"contract-sync-writer-{suffix}",
                    "MAPPER_APP_ID": f"contract-sync-mapper-{suffix}",
                    "MAPPER_DATADIR": str(options.work_dir / "mapper-data"),
                    "POLLER_COMMANDS_GROUP": f"contract-sync-poller-{suffix}",
                }
            )
        if options.topic_prefix:
            prefix = options.topic_prefix
            self.env.update(
                {"MAPPER_TOPIC_PREFIX": prefix, "POLLER_TOPIC_PREFIX": prefix}
                | {f"WRITER_{kind}_TOPIC": f"{prefix}{topic}" for kind, topic in _WRITER_TOPICS.items()}
            )
        self.group = ProcessGroup(options.work_dir / "logs", self.env, cwd=options.cwd)
        self.sim_port = free_port()
        self.sim_site = f"http://127.0.0.1:{self.sim_port}"
        self.control = SimControl(self.sim_site)
        self.callbacks_port = free_port() if options.callbacks else None
        self.health_ports = {name: free_port() for name in ("writer", "mapper", "poller")}
        self.gateway_port = free_port() if options.gateway else None
        if options.gateway:
            self.health_ports["gateway"] = free_port()
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}" if self.gateway_port else None
        self._engine: sa.Engine | None = None
        self._positioned_groups: set[str] = set()

    # ---------------------------------------------------------------- own topics (topic_prefix)
    def create_topics(self) -> list[str]:
        """Create the registry's topics under this pipeline's `topic_prefix` (the registry's own names
        without one; existing topics are kept) and wait until every partition has a leader; returns
        their names. Call before `start()`."""
        specs = [dataclasses.replace(spec, name=self.topic(spec.name)) for spec in TOPICS]
        settings = KafkaSettings(bootstrap_servers=self.options.kafka_bootstrap)

        async def create() -> None:
            await ensure_topics(settings, specs)
            await wait_for_leaders(settings, [spec.name for spec in specs])

        asyncio.run(create())
        return [spec.name for spec in specs]

    def delete_topics(self) -> list[str]:
        """Delete this pipeline's own topics and its mapper's changelog topics (best effort).

        Only names under `topic_prefix`, or starting with this pipeline's own `MAPPER_APP_ID`
        (`unique_groups`), are touched: never another pipeline's topics."""
        prefix = self.options.topic_prefix
        app_id = self.env.get("MAPPER_APP_ID", "") if self.options.unique_groups else ""

        def ours(name: str) -> bool:
            return bool(prefix and name.startswith(prefix)) or bool(app_id and name.startswith(f"{app_id}-"))

        settings = KafkaSettings(bootstrap_servers=self.options.kafka_bootstrap)
        try:
            return asyncio.run(delete_matching(settings, ours))
        except Exception:
            return []

    # ---------------------------------------------------------------- lifecycle
    def start(self, timeout_s: float = 120.0) -> None:
        """Start the simulator, then writer, mapper and poller; return when all are ready."""
        self.start_simulator()
        self.start_services(timeout_s)

    def start_simulator(self) -> None:
        """Start the ConnectWise simulator alone (the data exists before the pipeline starts)."""
        o = self.options
        self.group.start(
            "cw-sim",
            contract_sync_command(
                "cw-sim",
                "serve",
                "--port",
                str(self.sim_port),
                "--seed",
                str(o.seed),
                "--companies",
                str(o.companies),
                "--agreements-per-company",
                str(o.agreements_per_company),
                "--additions-per-agreement",
                str(o.additions_per_agreement),
            ),
        )
        if not wait_until(lambda: self.control.call("GET", "/health")["ok"], timeout_s=60):
            raise RuntimeError(f"simulator did not start:\n{self.group.members['cw-sim'].log_tail()}")

    def start_services(self, timeout_s: float = 120.0) -> None:
        """Start writer, mapper and poller on the running simulator; return when all are ready
        (and the callback is registered, with `callbacks`)."""
        self.config_path.write_text(tenants_toml(self.options, self.sim_site))
        for name in ("writer", "mapper", "poller"):
            self.start_service(name)
        if self.gateway_port:
            self.start_gateway()
        self.wait_ready(timeout_s)
        if self.callbacks_port:
            self.register_callback()

    def register_callback(self) -> None:
        """Register the poller's callback endpoint with ConnectWise for every agreement change."""
        with self.connectwise() as cw:
            response = cw.post(
                "/system/callbacks",
                json={
                    "url": f"http://127.0.0.1:{self.callbacks_port}/callbacks/{self.options.tenant_id}",
                    "objectId": 1,
                    "type": "agreement",
                    "level": "owner",
                    "description": "contract-sync poller",
                },
            )
            response.raise_for_status()

    def service_argv(self, name: str) -> list[str]:
        if name == "poller":
            return contract_sync_command("poller", "--config", str(self.config_path))
        return contract_sync_command(name)

    def consumer_groups(self, name: str) -> tuple[str, tuple[str, ...]] | None:
        """The consumer group of a service with `unique_groups` and the topics it reads (pure)."""
        if not self.options.unique_groups:
            return None
        t = self.topic
        if name == "writer":
            return self.env["WRITER_GROUP_ID"], (t(CONTRACT_RECORDS), t(PSA_AGREEMENTS), t(SYNC_COMMANDS))
        if name == "mapper":  # faust's group id is the app id
            return self.env["MAPPER_APP_ID"], (t(PSA_AGREEMENTS), t(SYNC_COMMANDS))
        if name == "poller":  # one group per shard; the pipeline runs shard 0 of 1
            return f"{self.env['POLLER_COMMANDS_GROUP']}-0of1", (t(SYNC_COMMANDS),)
        return None

    def commit_groups_at_end(self, name: str) -> None:
        """Commit the service's new consumer group at the current end of its topics, once per group
        and pipeline: a restarted service resumes from its own commits and misses nothing."""
        groups = self.consumer_groups(name)
        if groups is None or groups[0] in self._positioned_groups:
            return
        group_id, topics = groups
        self._positioned_groups.add(group_id)

        async def commit() -> None:
            consumer = AIOKafkaConsumer(
                **KafkaSettings(bootstrap_servers=self.options.kafka_bootstrap).client_kwargs(),
                group_id=group_id,
                enable_auto_commit=False,
            )
            await consumer.start()
            try:
                # all topics metadata, without joining the group
                leaders = await partition_leaders(
                    KafkaSettings(bootstrap_servers=self.options.kafka_bootstrap)
                )
                partitions = [
                    TopicPartition(topic, p) for topic in topics for p in sorted(leaders.get(topic, {}))
                ]
                consumer.assign(partitions)
                ends = await consumer.end_offsets(partitions)
                await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in ends.items()})
            finally:
                await consumer.stop()

        asyncio.run(commit())

    def principal_env(self, service: str) -> dict[str, str]:
        """With `service_principals`: the service's own Kafka credentials (see `service_kafka_env`)."""
        if not self.options.service_principals:
            return {}
        credentials = service_kafka_env({**os.environ, **self.env}, service)
        if not credentials:
            raise RuntimeError(
                f"service_principals: no {service.upper()}_KAFKA_SASL_USERNAME in the environment "
                "(eval the secured stack's `contract-sync stack env`)"
            )
        return credentials

    def start_service(self, name: str) -> ServiceProcess:
        if self.options.groups_start_at_end:
            self.commit_groups_at_end(name)
        env = (
            {"POLLER_CALLBACKS_PORT": str(self.callbacks_port)}
            if name == "poller" and self.callbacks_port
            else {}
        )
        if name in ("writer", "poller"):
            env["DATABASE_URL"] = service_database_url(self.options, name)
        env |= self.principal_env(name)
        return self.group.start(name, self.service_argv(name), env=env, health_port=self.health_ports[name])

    # ---------------------------------------------------------------- the Sync API (gateway)
    GATEWAY_ISSUER = "contract-sync-local"
    GATEWAY_AUDIENCE = "contract-sync-gateway"

    def start_gateway(self) -> ServiceProcess:
        """Start `contract-sync gateway` on the pipeline's topics (API on `gateway_port`, `/readyz` also
        on its health port)."""
        from services.gateway.local_issuer import ensure_keys

        keys = ensure_keys(self.options.work_dir / "gateway-keys")
        env = {
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.gateway_port),
            "GATEWAY_JWKS_FILE": str(keys.jwks_path),
            "GATEWAY_ISSUER": self.GATEWAY_ISSUER,
            "GATEWAY_AUDIENCE": self.GATEWAY_AUDIENCE,
            "GATEWAY_COMMANDS_TOPIC": self.topic(SYNC_COMMANDS),
            "GATEWAY_EVENTS_TOPIC": self.topic(SYNC_EVENTS),
            "DATABASE_URL": service_database_url(self.options, "gateway"),
        }
        if self.options.unique_groups:
            env["GATEWAY_OUTCOMES_GROUP_ID"] = f"contract-sync-gateway-{self.options.tenant_id}"
        env |= self.principal_env("gateway")
        return self.group.start(
            "gateway", contract_sync_command("gateway"), env=env, health_port=self.health_ports["gateway"]
        )

    def gateway_token(
        self,
        scopes: list[str] | None = None,
        tenant_id: str | None = None,
        subject: str = "demo-user",
        ttl_s: int = 3600,
    ) -> str:
        """A token of the pipeline's local issuer for its gateway (all scopes unless given)."""
        from services.gateway.local_issuer import ensure_keys, mint_token
        from services.gateway.settings import SCOPES

        return mint_token(
            ensure_keys(self.options.work_dir / "gateway-keys"),
            tenant_id=tenant_id or self.options.tenant_id,
            subject=subject,
            scopes=list(SCOPES) if scopes is None else scopes,
            issuer=self.GATEWAY_ISSUER,
            audience=self.GATEWAY_AUDIENCE,
            ttl_seconds=ttl_s,
        )

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        names = (
            ("writer", "mapper", "poller", "gateway") if self.gateway_port else ("writer", "mapper", "poller")
        )
        services = [self.group.members[n] for n in names]
        if not wait_until(lambda: all(s.ready() for s in services), timeout_s=timeout_s, interval_s=0.5):
            tails = "\n".join(f"--- {s.name} (alive={s.alive()})\n{s.log_tail()}" for s in services)
            raise RuntimeError(f"pipeline not ready within {timeout_s:.0f} s:\n{tails}")

    def stop(self) -> None:
        self.group.stop()
        self.control.close()
        if self._engine is not None:
            self._engine.dispose()

    def alive(self) -> dict[str, bool]:
        return {name: member.alive() for name, member in self.group.members.items()}

    # ---------------------------------------------------------------- the simulator (ConnectWise API)
    @contextmanager
    def connectwise(self) -> Iterator[httpx.Client]:
        """An httpx client on the simulator's ConnectWise API with the tenant's credentials."""
        with httpx.Client(
            base_url=f"{self.sim_site}/v4_6_release/apis/3.0",
            auth=(f"{SIM_COMPANY}+{SIM_PUBLIC_KEY}", SIM_PRIVATE_KEY),
            headers={"clientId": SIM_CLIENT_ID},
            timeout=30,
        ) as client:
            yield client

    def psa_companies(self) -> list[dict[str, Any]]:
        with self.connectwise() as cw:
            result: list[dict[str, Any]] = cw.get(
                "/company/companies", params={"pageSize": 1000, "orderBy": "id"}
            ).json()
            return result

    def psa_agreements(self, company_id: int) -> list[dict[str, Any]]:
        with self.connectwise() as cw:
            result: list[dict[str, Any]] = cw.get(
                "/finance/agreements",
                params={"conditions": f"company/id = {int(company_id)}", "pageSize": 1000, "orderBy": "id"},
            ).json()
            return result

    def psa_additions(self, agreement_id: int) -> list[dict[str, Any]]:
        with self.connectwise() as cw:
            result: list[dict[str, Any]] = cw.get(
                f"/finance/agreements/{int(agreement_id)}/additions", params={"pageSize": 1000}
            ).json()
            return result

    # ---------------------------------------------------------------- commands (the wire contract)
    def topic(self, canonical: str) -> str:
        """The actual name of a registry topic in this pipeline (`topic_prefix`)."""
        return f"{self.options.topic_prefix}{canonical}"

    def publish(self, command: CloudEvent) -> None:
        asyncio.run(self._publish(command))

    async def _publish(self, command: CloudEvent) -> None:
        producer = new_producer(KafkaSettings(bootstrap_servers=self.options.kafka_bootstrap))
        await producer.start()
        try:
            await publish(producer, self.topic(SYNC_COMMANDS), command)
        finally:
            await producer.stop()

    # ---------------------------------------------------------------- what the pipeline produced
    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(self.options.database_url, pool_size=2)
        return self._engine

    def contracts(self, client_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(contracts).where(contracts.c.tenant_id == self.options.tenant_id)
        if client_id is not None:
            query = query.where(contracts.c.client_id == client_id)
        with self.engine.connect() as connection:
            return [
                dict(row._mapping) for row in connection.execute(query.order_by(contracts.c.contract_key))
            ]

    def contract(self, key: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(contracts).where(contracts.c.contract_key == key)).first()
            return dict(row._mapping) if row else None

    def sync_settings(self) -> list[dict[str, Any]]:
        query = sa.select(client_sync_settings).where(
            client_sync_settings.c.tenant_id == self.options.tenant_id
        )
        with self.engine.connect() as connection:
            return [
                dict(r._mapping) for r in connection.execute(query.order_by(client_sync_settings.c.client_id))
            ]

    def cli_environment(self) -> dict[str, str]:
        """The environment of `cli`: this process's, overridden by the pipeline's Kafka settings and
        its owner's DATABASE_URL, so a stack on other ports is never confused with the default one."""
        return {**os.environ, **self.env, "DATABASE_URL": self.options.database_url}

    def cli(self, *args: str) -> str:
        """Run `contract-sync ARGS` with the pipeline's Kafka and PostgreSQL endpoints (never the
        environment's defaults); returns stdout."""
        result = subprocess.run(
            contract_sync_command(*args),
            env=self.cli_environment(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"contract-sync {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout

    def catalog(self, client_id: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(
            self.cli("catalog", "--tenant", self.options.tenant_id, "--client", client_id, "--json")
        )
        return document

    def events(self, predicate: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """Every sync event of this tenant so far (in per-client order), optionally filtered."""
        return asyncio.run(self._read_events(predicate))

    async def _read_events(self, predicate: Callable[[dict[str, Any]], bool] | None) -> list[dict[str, Any]]:
        consumer = new_consumer(
            KafkaSettings(bootstrap_servers=self.options.kafka_bootstrap),
            self.topic(SYNC_EVENTS),
            group_id=None,
        )
        await consumer.start()
        found: list[dict[str, Any]] = []
        try:
            for _ in range(200):
                if consumer.assignment():
                    break
                await asyncio.sleep(0.05)
            partitions = list(consumer.assignment())
            await consumer.seek_to_beginning(*partitions)
            async for record in read_until_end(consumer, partitions, max_records=5000):
                try:
                    event = json.loads(parse(SYNC_EVENTS, record.value or b"").to_bytes())
                except ValueError:
                    continue
                if event.get("tenantid") == self.options.tenant_id and (
                    predicate is None or predicate(event)
                ):
                    found.append(event)
        finally:
            await consumer.stop()
        return found
