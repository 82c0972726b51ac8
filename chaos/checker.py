"""The checker: what the contract store must hold, and how PostgreSQL differs from it.

Contract:
- `read_psa` reads every agreement and addition of the tenant through the simulator's
  ConnectWise API (the same API the poller uses, never its control API or the mapper).
- `expected_store` applies the commands the harness issued (`Intent`: auto-sync clients, explicit
  selections, removals it caused, local edits it made) to that data with the independent mapping rules (docs/design.md#mapping-rules)
  of `chaos.rules`.
- `compare` reads nothing and decides nothing beyond its inputs: every expected key must be
  present exactly once with every compared field right; anything else is reported as lost,
  duplicated or wrong, with the first differences spelled out. It is never relaxed to pass.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import sqlalchemy as sa

from chaos.rules import Expected, expected_records
from services.common.db.tables import contracts

SEEDED = ("name", "contract_type", "start_date", "end_date", "description")


@dataclass
class PsaData:
    """Everything the tenant's ConnectWise holds: agreements by id, additions by agreement id."""

    agreements: dict[int, dict[str, Any]]
    additions: dict[int, list[dict[str, Any]]]

    @property
    def item_count(self) -> int:
        return len(self.agreements) + sum(len(a) for a in self.additions.values())


@dataclass
class Intent:
    """The commands the harness issued and the changes it made, as the checker needs them."""

    auto_sync_clients: set[str] = field(default_factory=set)
    selections: dict[str, tuple[set[int], set[int]]] = field(default_factory=dict)
    """client -> (agreement ids, addition ids) selected while auto-sync was off."""
    removed: dict[str, Expected] = field(default_factory=dict)
    """Contracts of items the harness deleted in ConnectWise: kept, marked retired, last values."""
    edits: dict[str, dict[str, Any]] = field(default_factory=dict)
    """contract key -> accepted local edits (seeded fields become overrides, local fields set)."""


@dataclass(frozen=True)
class Difference:
    contract_key: str
    field: str
    expected: str
    found: str


@dataclass
class CheckResult:
    expected: int
    found: int
    lost: list[str]
    duplicated: list[str]
    wrong: list[Difference]

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicated and not self.wrong

    @property
    def wrong_keys(self) -> set[str]:
        return {d.contract_key for d in self.wrong}

    def summary(self, limit: int = 8) -> str:
        lines = [
            f"expected {self.expected}, found {self.found}, lost {len(self.lost)}, "
            f"duplicated {len(self.duplicated)}, wrong {len(self.wrong_keys)}"
        ]
        lines += [f"  lost {key}" for key in self.lost[:limit]]
        lines += [f"  duplicated {key}" for key in self.duplicated[:limit]]
        lines += [
            f"  wrong {d.contract_key}.{d.field}: expected {d.expected} found {d.found}"
            for d in self.wrong[:limit]
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Reading ConnectWise (the simulator's API, with the tenant's credentials)


RETRIED_STATUSES = frozenset({401, 403, 429, 500, 502, 503, 504})


async def _get(client: httpx.AsyncClient, path: str, params: dict[str, Any], attempts: int = 60) -> Any:
    """GET with retries on injected faults (the harness's reads are not what is under test)."""
    for attempt in range(attempts):
        try:
            response = await client.get(path, params=params)
        except httpx.TransportError:
            await asyncio.sleep(0.5)
            continue
        if response.status_code in RETRIED_STATUSES and attempt < attempts - 1:
            await asyncio.sleep(min(float(response.headers.get("retry-after", "0.5") or 0.5), 5.0))
            continue
        response.raise_for_status()
        return response.json()
    raise RuntimeError(f"GET {path} failed {attempts} times")


async def _read_psa(client: httpx.AsyncClient, concurrency: int) -> PsaData:
    agreements: dict[int, dict[str, Any]] = {}
    page = 1
    while True:
        rows: list[dict[str, Any]] = await _get(
            client, "/finance/agreements", {"pageSize": 1000, "page": page, "orderBy": "id asc"}
        )
        agreements.update({int(row["id"]): row for row in rows})
        if len(rows) < 1000:
            break
        page += 1
    additions: dict[int, list[dict[str, Any]]] = {}
    gate = asyncio.Semaphore(concurrency)

    async def read(agreement_id: int) -> None:
        async with gate:
            found: list[dict[str, Any]] = []
            page = 1
            while True:
                rows = await _get(
                    client,
                    f"/finance/agreements/{agreement_id}/additions",
                    {"pageSize": 1000, "page": page, "orderBy": "id asc"},
                )
                found.extend(rows)
                if len(rows) < 1000:
                    break
                page += 1
            additions[agreement_id] = found

    await asyncio.gather(*(read(agreement_id) for agreement_id in agreements))
    return PsaData(agreements, additions)


def read_psa(
    api_base_url: str, auth: tuple[str, str], headers: Mapping[str, str], concurrency: int = 16
) -> PsaData:
    """All agreements and additions visible to the tenant's API member (retries injected faults,
    raises on any other HTTP error)."""

    async def run() -> PsaData:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=api_base_url, auth=auth, headers=dict(headers), timeout=10, limits=limits
        ) as client:
            return await _read_psa(client, concurrency)

    return asyncio.run(run())


# ---------------------------------------------------------------------------------------------
# The expected store


def expected_store(tenant_id: str, psa: PsaData, intent: Intent, todays: list[date]) -> dict[str, Expected]:
    """Every contract the store must hold for the tenant, by key (pure)."""
    wanted: dict[str, Expected] = {}
    for agreement_id, agreement in psa.agreements.items():
        client = str((agreement.get("company") or {}).get("id"))
        additions = psa.additions.get(agreement_id, [])
        records = expected_records(tenant_id, agreement, additions, todays=todays)
        if client in intent.auto_sync_clients:
            wanted.update({r.contract_key: r for r in records})
        elif client in intent.selections:
            agreement_ids, addition_ids = intent.selections[client]
            for record in records:
                chosen = (
                    record.agreement_id in agreement_ids
                    if record.kind == "agreement"
                    else record.addition_id in addition_ids
                )
                if chosen:
                    wanted[record.contract_key] = record
    for key, record in intent.removed.items():
        wanted[key] = replace(record, retired=True)
    for key, changes in intent.edits.items():
        if key in wanted:
            record = wanted[key]
            wanted[key] = replace(
                record,
                overrides={**record.overrides, **{f: v for f, v in changes.items() if f in SEEDED}},
                local={**record.local, **{f: v for f, v in changes.items() if f not in SEEDED}},
            )
    return wanted


# ---------------------------------------------------------------------------------------------
# PostgreSQL and the comparison


def stored_rows(engine: sa.Engine, tenant_id: str) -> list[dict[str, Any]]:
    """Every contract row of the tenant, plus rows of other tenants that name the tenant's keys."""
    query = sa.select(contracts).where(
        sa.or_(contracts.c.tenant_id == tenant_id, contracts.c.contract_key.like(f"cw:{tenant_id}:%"))
    )
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _same_amount(expected: Decimal, found: Any) -> bool:
    return found is not None and Decimal(str(found)) == expected


def _differences(e: Expected, row: Mapping[str, Any]) -> Iterable[Difference]:
    def diff(name: str, want: Any, got: Any) -> Difference:
        return Difference(e.contract_key, name, _show(want), _show(got))

    plain = {
        "client_id": e.client_id,
        "kind": e.kind,
        "agreement_id": e.agreement_id,
        "addition_id": e.addition_id,
        "parent_contract_key": e.parent_contract_key,
        "billing_currency": e.currency,
        "billing_cycle": e.cycle,
        "category": e.category,
        "psa_last_updated": e.psa_last_updated,
        "psa_synced": True,
    }
    for name, want in plain.items():
        got = row.get(name)
        if isinstance(got, str) and name == "billing_currency":
            got = got.strip()
        if got != want:
            yield diff(name, want, got)
    if row.get("status") not in e.statuses:
        yield diff("status", sorted(e.statuses), row.get("status"))
    if not _same_amount(e.amount, row.get("billing_amount")):
        yield diff("billing_amount", e.amount, row.get("billing_amount"))
    psa_values = {
        "name": e.name,
        "contract_type": e.contract_type,
        "start_date": e.start_date,
        "end_date": e.end_date,
        "description": e.description,
    }
    overrides = row.get("local_overrides") or {}
    for name, want in psa_values.items():
        if row.get(f"psa_{name}") != want:
            yield diff(f"psa_{name}", want, row.get(f"psa_{name}"))
        effective = e.overrides.get(name, want)
        got = row.get(name)
        if isinstance(got, date) and isinstance(effective, str):
            got = got.isoformat()
        if got != effective:
            yield diff(name, effective, row.get(name))
        if (name in e.overrides) != (name in overrides):
            yield diff(f"local_overrides[{name}]", name in e.overrides, name in overrides)
    for name, want in e.local.items():
        if row.get(name) != want:
            yield diff(name, want, row.get(name))
    if e.retired != (row.get("removed_in_psa_at") is not None):
        yield diff("removed_in_psa_at", "set" if e.retired else None, row.get("removed_in_psa_at"))


def compare(
    tenant_id: str,
    expected: Mapping[str, Expected],
    rows: list[dict[str, Any]],
    *,
    created_events: int | None = None,
) -> CheckResult:
    """Lost / duplicated / wrong (pure).

    - lost: an expected key with no row;
    - duplicated: a PSA item stored under more than one row, a row of the tenant under another
      tenant, or (when `created_events` is given) more creations announced by the writer's
      `sync.contracts.applied` events than rows exist, i.e. a record applied twice;
    - wrong: a row whose compared fields differ, or a row the commands never asked for.
    """
    by_key = {row["contract_key"]: row for row in rows}
    lost = sorted(key for key in expected if key not in by_key)
    duplicated: list[str] = []
    identities = Counter(
        (r.get("tenant_id"), r.get("kind"), r.get("agreement_id"), r.get("addition_id")) for r in rows
    )
    for row in rows:
        identity = (row.get("tenant_id"), row.get("kind"), row.get("agreement_id"), row.get("addition_id"))
        if identities[identity] > 1:
            duplicated.append(row["contract_key"])
        elif row.get("tenant_id") != tenant_id:
            duplicated.append(f"{row['contract_key']} (stored under tenant {row.get('tenant_id')!r})")
    tenant_rows = [r for r in rows if r.get("tenant_id") == tenant_id]
    if created_events is not None and created_events > len(tenant_rows):
        duplicated.append(
            f"writer announced {created_events} created contracts for {len(tenant_rows)} rows "
            f"({created_events - len(tenant_rows)} applied more than once)"
        )
    wrong: list[Difference] = []
    for key, row in sorted(by_key.items()):
        if row.get("tenant_id") != tenant_id:
            continue
        record = expected.get(key)
        if record is None:
            wrong.append(Difference(key, "(row)", "no contract", "a contract the commands never asked for"))
            continue
        wrong.extend(_differences(record, row))
    return CheckResult(len(expected), len(tenant_rows), lost, sorted(duplicated), wrong)
