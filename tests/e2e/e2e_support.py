"""End-to-end helpers (the fixture is in conftest.py): ONE running pipeline (simulator, writer,
mapper, poller as processes) per session, driven only through the wire contract.

- `e2e` (session, conftest.py): a `LocalPipeline` with a unique tenant `e2e-<hex>`, consumer groups
  and topics of its own (the registry's topics under the prefix `e2e-<hex>.`), plus two tails that
  collect, from before the pipeline started, its `sync.events.v1` and `sync.deadletter.v1` records
  in a background thread. At the end the pipeline is stopped, the teardown asserts that no process
  of it (nor of its process groups) is left, and removes what the run created outside the contract
  tables (its topics, the mapper's changelog, the poller's cursors and snapshots of the tenant).
- `E2E`: `refresh/select/set_auto_sync/edit(...)` build and publish a command (and remember its
  id), `wait_for(...)` polls a probe with a deadline (failing at once with log tails if a service
  died), `events(...)` / `wait_event(...)` / `wait_applied(...)` read the tail,
  `catalog(client)` the import dialog's rows (view `catalog_item_states`), `contracts(client)` the
  contract rows, `settings(client)` the per-client sync settings.
- `expected_agreement` / `expected_addition`: docs/design.md#mapping-rules's mapping rules written here on purpose,
  independently of `services.mapper`, from the simulator's ConnectWise answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition

from devtools.demo.pipeline import LocalPipeline
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
from services.common.settings import KafkaSettings

T = TypeVar("T")
SOURCE = "contract-sync/e2e-tests"
REQUESTED_BY = "e2e@msp.example"


def secured_stack() -> bool:
    """True when the environment points at a secured stack (`stack up --secure`; `make test`'s
    end-to-end run): SASL credentials for the tools and one per service."""
    return os.environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT") != "PLAINTEXT" and bool(
        os.environ.get("WRITER_KAFKA_SASL_USERNAME")
    )


def kafka_client(e2e: E2E) -> dict[str, Any]:
    """aiokafka keyword arguments for the session's broker: its bootstrap and, on the secured stack,
    the environment's (admin) credentials."""
    return KafkaSettings(bootstrap_servers=e2e.pipeline.options.kafka_bootstrap).client_kwargs()


# ------------------------------------------------------------------------------------------------
# Tails of sync.events.v1 / sync.deadletter.v1


@dataclass
class TailRecord:
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    partition: int
    offset: int

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.value)
        return document


class KafkaTail:
    """Collects the records of one topic accepted by `keep`, from offsets taken at construction time,
    in a background thread (its own event loop) until `close()`."""

    def __init__(self, bootstrap: str, topic: str, keep: Callable[[TailRecord], bool]) -> None:
        self.bootstrap, self.topic, self.keep = bootstrap, topic, keep
        self._records: list[TailRecord] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"tail-{topic}", daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError(f"tail of {topic} did not start: {self._error!r}")
        if self._error is not None:
            raise RuntimeError(f"tail of {topic} failed to start") from self._error

    def records(self) -> list[TailRecord]:
        with self._lock:
            return list(self._records)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._consume())
        except BaseException as error:  # surfaced through _ready / records
            self._error = error
            self._ready.set()

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            **KafkaSettings(bootstrap_servers=self.bootstrap).client_kwargs(), enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(self.topic)
            for _ in range(100):
                if partitions:
                    break
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(self.topic)
                await asyncio.sleep(0.1)
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions or ())]
            if not assigned:
                raise RuntimeError(
                    f"topic {self.topic} has no partitions (run `contract-sync topics ensure`)"
                )
            consumer.assign(assigned)
            ends = await consumer.end_offsets(assigned)
            for tp, offset in ends.items():
                consumer.seek(tp, offset)
            self._ready.set()
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=2000)
                fresh: list[TailRecord] = []
                for records in batch.values():
                    for r in records:
                        record = TailRecord(
                            key=r.key,
                            value=r.value or b"",
                            headers={k: bytes(v) for k, v in (r.headers or ())},
                            partition=r.partition,
                            offset=r.offset,
                        )
                        if self.keep(record):
                            fresh.append(record)
                if fresh:
                    with self._lock:
                        self._records.extend(fresh)
        finally:
            await consumer.stop()


# ------------------------------------------------------------------------------------------------
# The pipeline and its helpers


class WaitTimeout(AssertionError):
    pass


@dataclass
class E2E:
    pipeline: LocalPipeline
    events_tail: KafkaTail
    deadletter_tail: KafkaTail
    started_s: float = field(default_factory=time.monotonic)
    published: list[tuple[str, str]] = field(default_factory=list)
    """(type, id) of every command published through `publish`, in order."""

    @property
    def tenant(self) -> str:
        return self.pipeline.options.tenant_id

    # -- commands -------------------------------------------------------------------------------
    def _data(self, client: str, **fields: Any) -> dict[str, Any]:
        return {"tenant_id": self.tenant, "client_id": client, "requested_by": REQUESTED_BY, **fields}

    def publish(self, command: CloudEvent) -> str:
        self.pipeline.publish(command)
        self.published.append((command.type, str(command.id)))
        return str(command.id)

    def refresh(self, client: str) -> str:
        return self.publish(RefreshCommand.build(RefreshData(**self._data(client)), source=SOURCE))

    def select(self, client: str, agreement_ids: list[int], addition_ids: list[int]) -> str:
        data = SelectData(**self._data(client, agreement_ids=agreement_ids, addition_ids=addition_ids))
        return self.publish(SelectCommand.build(data, source=SOURCE))

    def set_auto_sync(self, client: str, enabled: bool) -> str:
        return self.publish(
            SetAutoSyncCommand.build(SetAutoSyncData(**self._data(client, enabled=enabled)), source=SOURCE)
        )

    def edit(self, client: str, contract_id: str, changes: dict[str, Any]) -> str:
        data = EditData(**self._data(client, contract_id=contract_id, changes=changes))
        return self.publish(EditCommand.build(data, source=SOURCE))

    # -- waiting --------------------------------------------------------------------------------
    def wait_for(self, what: str, probe: Callable[[], T | None], timeout_s: float = 45.0) -> T:
        """Poll `probe` until it returns something truthy; fail with the services' log tails after
        `timeout_s` (or at once when a service died)."""
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while True:
            try:
                value = probe()
            except Exception as error:  # a probe may race a half-applied state; retry
                value, last_error = None, error
            if value:
                return value
            dead = [name for name, alive in self.pipeline.alive().items() if not alive]
            if dead or time.monotonic() > deadline:
                tails = "\n".join(
                    f"--- {name} (alive={m.alive()})\n{m.log_tail(12)}"
                    for name, m in self.pipeline.group.members.items()
                )
                cause = f" (last probe error: {last_error!r})" if last_error else ""
                reason = f"services died: {dead}" if dead else f"timed out after {timeout_s:.0f} s"
                raise WaitTimeout(f"{reason} waiting for: {what}{cause}\n{tails}")
            time.sleep(0.25)

    # -- sync.events.v1 / sync.deadletter.v1 -------------------------------------------------------
    def events(self, event_type: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """This tenant's sync events since the session started; `match` compares envelope attributes
        (`correlationid=...`, `subject=...`) or, prefixed `data_`, data fields."""
        found = []
        for record in self.events_tail.records():
            event = record.json()
            if event_type is not None and event.get("type") != event_type:
                continue
            data = event.get("data") or {}
            if all(
                (data.get(k[5:]) if k.startswith("data_") else event.get(k)) == v for k, v in match.items()
            ):
                found.append(event)
        return found

    def wait_event(self, what: str, event_type: str, timeout_s: float = 45.0, **match: Any) -> dict[str, Any]:
        return self.wait_for(what, lambda: self.events(event_type, **match), timeout_s)[-1]

    def wait_applied(self, command_id: str, created: int, timeout_s: float = 45.0) -> list[dict[str, Any]]:
        """Wait until the `sync.contracts.applied` events correlated to a command count `created`
        created contracts (the writer publishes them after its commit, possibly over several batches)."""

        def probe() -> list[dict[str, Any]] | None:
            found = self.events("sync.contracts.applied", correlationid=command_id)
            return found if sum(e["data"]["created"] for e in found) >= created else None

        return self.wait_for(
            f"sync.contracts.applied of {command_id} counting {created} created", probe, timeout_s
        )

    def deadletters(self) -> list[TailRecord]:
        return self.deadletter_tail.records()

    # -- PostgreSQL -----------------------------------------------------------------------------
    def _rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.pipeline.engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(sa.text(sql), params)]

    def catalog(self, client: str) -> dict[str, dict[str, Any]]:
        """The import dialog's items of a client by contract key (with their `state`)."""
        rows = self._rows(
            "SELECT * FROM catalog_item_states WHERE tenant_id = :t AND client_id = :c",
            t=self.tenant,
            c=client,
        )
        return {row["contract_key"]: row for row in rows}

    def contracts(self, client: str) -> dict[str, dict[str, Any]]:
        return {row["contract_key"]: row for row in self.pipeline.contracts(client)}

    def contract(self, key: str) -> dict[str, Any] | None:
        return self.pipeline.contract(key)

    def settings(self, client: str) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT * FROM client_sync_settings WHERE tenant_id = :t AND client_id = :c",
            t=self.tenant,
            c=client,
        )
        return rows[0] if rows else None

    # -- keys -----------------------------------------------------------------------------------
    def agreement_key(self, agreement_id: int) -> str:
        return f"cw:{self.tenant}:agreement:{agreement_id}"

    def addition_key(self, addition_id: int) -> str:
        return f"cw:{self.tenant}:addition:{addition_id}"

    # -- the simulator's ConnectWise view -------------------------------------------------------
    def psa_client(self, client: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Every agreement of a company, each with its additions, as ConnectWise serves them."""
        return [(a, self.pipeline.psa_additions(a["id"])) for a in self.pipeline.psa_agreements(int(client))]


# ------------------------------------------------------------------------------------------------
# docs/design.md#mapping-rules, written independently of services.mapper


CYCLES = {
    "Monthly": "monthly",
    "Quarterly": "quarterly",
    "SemiAnnual": "semi_annual",
    "Yearly": "annual",
    "Weekly": "weekly",
    "BiWeekly": "bi_weekly",
    "BiMonthly": "bi_monthly",
    "NotRecurring": "one_time",
}
DEFAULT_CURRENCY = "USD"  # the tenant's default_currency in the generated tenants file


def cw_date(value: str | None) -> date | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).date() if value else None


def money(value: Any) -> Decimal:
    return Decimal(str(value if value is not None else 0))


def today() -> date:
    """The tenant's "today" (time zone UTC in the generated tenants file)."""
    return datetime.now(UTC).date()


def agreement_status(agreement: dict[str, Any], on: date) -> str:
    raw = agreement.get("agreementStatus")
    end = cw_date(agreement.get("endDate"))
    start = cw_date(agreement.get("startDate"))
    if agreement.get("cancelledFlag") or raw == "Cancelled":
        return "cancelled"
    if raw == "Expired" or (end is not None and end < on and not agreement.get("noEndingDateFlag")):
        return "expired"
    if raw == "Inactive":
        return "inactive"
    if start is not None and start > on:
        return "pending"
    return "active"


def agreement_currency(agreement: dict[str, Any]) -> str:
    currency = agreement.get("currency") or {}
    return str(currency.get("currencyCode") or currency.get("currencyIdentifier") or DEFAULT_CURRENCY)


def expected_agreement(tenant: str, agreement: dict[str, Any], on: date) -> dict[str, Any]:
    cycle = CYCLES[agreement["billingCycle"]["name"]]
    one_time = bool(agreement.get("billOneTimeFlag") or agreement.get("oneTimeFlag"))  # a one-time agreement
    parent = agreement.get("parentAgreement")
    return {
        "kind": "agreement",
        "agreement_id": agreement["id"],
        "addition_id": None,
        "parent_contract_key": f"cw:{tenant}:agreement:{parent['id']}" if parent else None,
        "status": agreement_status(agreement, on),
        "billing_amount": money(agreement.get("billAmount")),
        "billing_currency": agreement_currency(agreement),
        "billing_cycle": cycle,
        "category": "fixed_cost" if cycle == "one_time" or one_time else "recurring",
        "psa_name": agreement["name"],
        "psa_start_date": cw_date(agreement.get("startDate")),
        "psa_end_date": cw_date(agreement.get("endDate")),
    }


def expected_addition(
    tenant: str, agreement: dict[str, Any], addition: dict[str, Any], on: date
) -> dict[str, Any]:
    billable = addition.get("billCustomer", "Billable") == "Billable"
    # ConnectWise's billedQuantity: an over-included line (lessIncluded > quantity) bills 0 units
    billed = max(Decimal(0), money(addition.get("quantity")) - money(addition.get("lessIncluded")))
    cost = billed * money(addition.get("unitPrice"))
    cancelled = cw_date(addition.get("cancelledDate"))
    effective = cw_date(addition.get("effectiveDate"))
    if cancelled is not None and cancelled <= on:
        status = "cancelled"
    elif effective is not None and on < effective:
        status = "pending"
    else:
        status = agreement_status(agreement, on)
    return {
        "kind": "addition",
        "agreement_id": agreement["id"],
        "addition_id": addition["id"],
        "parent_contract_key": f"cw:{tenant}:agreement:{agreement['id']}",
        "status": status,
        "billing_amount": cost if billable else Decimal(0),
        "billing_currency": agreement_currency(agreement),
        "billing_cycle": CYCLES[agreement["billingCycle"]["name"]],
    }


def assert_maps(row: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    """The contract row holds every expected field (money compared as Decimal)."""
    assert row is not None, f"no contract for {expected}"
    actual: dict[str, Any] = {name: row.get(name) for name in expected}
    if (amount := actual.get("billing_amount")) is not None:
        actual["billing_amount"] = Decimal(amount)
    if isinstance(currency := actual.get("billing_currency"), str):
        actual["billing_currency"] = currency.strip()
    assert actual == expected, f"{row['contract_key']}: {actual} != {expected}"
