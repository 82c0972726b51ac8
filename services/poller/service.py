"""Poller orchestration for one tenant: incremental runs, the additions sweep, client refreshes,
callback hints and the removal reconcile, plus the loop that schedules them.

Every run follows the same rules:
- Snapshots are read concurrently (bounded by the tenant's `concurrency`), each agreement with all
  its additions; a snapshot is emitted as `psa.agreement.observed` only when its digest differs
  from the last one emitted (`changes.is_changed`).
- A snapshot's digest is recorded only after Kafka acknowledged its event (`Emitter.flush`), and a
  scope's watermark moves only after the whole run succeeded and everything was acknowledged.
  A crash therefore re-emits at most the events whose digests were not yet recorded, and a failed
  or abandoned run (SIGTERM, cancellation, an error) leaves its watermark where it was.
- Nothing is ever removed because of an error or an absence: a removal event needs a direct GET
  that answered ConnectWise's own JSON NotFound (`ConnectWiseNotFoundError.proves_absence`; any
  other 404 is a `ConnectWiseForeignNotFoundError` and fails the run). Every path that removes an
  agreement (incremental read, sweep, refresh, reconcile, callback) goes through one guard,
  `_remove_agreement`: the proof, then the removal budget per run and per tenant
  (`reconcile.RemovalBudget`); a removal over budget is held and the run raises `sync.failed`.
- 401/403 pause the tenant with exponential backoff and raise `sync.failed` naming the fix; other
  failures raise `sync.failed` (retryable) and the next cycle tries again.

Run kinds and what they read:
- incremental (`poll_once`): agreements with `lastUpdated >= watermark - overlap` (1,000 per page);
  additions of those whose own content changed; plus the sweep's share of known agreements.
- refresh (`refresh_client`): every agreement of one client and all their additions, now; also
  confirms removals of that client's agreements that disappeared.
- reconcile (`reconcile`): every agreement id (`fields=id`) against the known ones, behind the guard.
- callback (`recheck_agreement`): one agreement and its additions, as a hint.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from schemas.envelope import ALL_CLIENTS, CloudEvent, utcnow
from schemas.events import (
    Heartbeat,
    HeartbeatData,
    PollCompleted,
    PollCompletedData,
    SyncFailed,
    SyncFailedData,
)
from schemas.topics import PSA_AGREEMENTS, SYNC_EVENTS
from services.common.metrics import EVENTS_PRODUCED, LAST_SUCCESSFUL_POLL, TENANT_PAUSED
from services.poller import cursor as cursors
from services.poller.changes import (
    SOURCE,
    KnownAgreement,
    TenantContext,
    addition_ids_of,
    additions_digest,
    build_addition_removed,
    build_agreement_removed,
    build_observed,
    company_id_of,
    evidence_404,
    is_changed,
    needs_additions_read,
    removed_addition_ids,
    snapshot_digest,
)
from services.poller.connectwise import (
    ConnectWiseAuthenticationError,
    ConnectWiseClient,
    ConnectWiseError,
    ConnectWiseNotFoundError,
    ConnectWisePermissionError,
    StatsSnapshot,
)
from services.poller.connectwise import conditions as cond
from services.poller.publisher import Publisher
from services.poller.reconcile import RemovalBudget, RemovalGuard, plan_removals
from services.poller.store import PollerStore
from services.poller.sweep import due_for_sweep
from services.poller.tenants import TenantConfig

log = logging.getLogger(__name__)

RunKind = Literal["incremental", "refresh", "reconcile", "callback"]
Json = dict[str, Any]
PAGE_SIZE = 1000
MAX_PAUSE = timedelta(hours=1)
MAX_REFRESH_HINTS = 1_000
MAX_RECHECK_HINTS = 10_000
HINTS_PER_TURN = 10
"""Hints run per turn of the scheduling loop before it checks whether a scheduled run is due."""
FIRST_PAUSE = timedelta(minutes=1)


class Emitter:
    """Sends events and records what Kafka acknowledged.

    `observed`/`removed` queue an event and the state change it implies; `flush` waits for every
    queued acknowledgement and only then writes the snapshot digests (one transaction) and drops
    removed agreements. A failed acknowledgement raises from `flush` and records nothing of that batch.
    Flushes happen every `batch_size` events or `flush_interval` seconds, which bounds the tail a
    crash can re-emit (events sent but not yet recorded).
    """

    def __init__(
        self,
        publisher: Publisher,
        store: PollerStore,
        tenant_id: str,
        batch_size: int = 200,
        flush_interval: float = 0.5,
        *,
        psa_topic: str = PSA_AGREEMENTS,
        events_topic: str = SYNC_EVENTS,
    ) -> None:
        self._psa_topic = psa_topic
        self._events_topic = events_topic
        self._publisher = publisher
        self._store = store
        self._tenant_id = tenant_id
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._last_flush = time.monotonic()
        self._pending: list[Awaitable[Any]] = []
        self._records: list[KnownAgreement] = []
        self._forget: list[int] = []
        self._lock = asyncio.Lock()
        self.sent = 0

    async def _send(self, topic: str, event: CloudEvent) -> None:
        self._pending.append(await self._publisher.send(topic, event))
        self.sent += 1
        EVENTS_PRODUCED.labels("poller", topic, event.type).inc()

    async def observed(self, event: CloudEvent, record: KnownAgreement) -> None:
        await self._send(self._psa_topic, event)
        self._records.append(record)
        if (
            len(self._pending) >= self._batch_size
            or time.monotonic() - self._last_flush >= self._flush_interval
        ):
            await self.flush()

    async def removed(self, event: CloudEvent, *, forget_agreement: int | None = None) -> None:
        await self._send(self._psa_topic, event)
        if forget_agreement is not None:
            self._forget.append(forget_agreement)

    async def sync_event(self, event: CloudEvent) -> None:
        await self._send(self._events_topic, event)

    async def flush(self) -> None:
        async with self._lock:
            self._last_flush = time.monotonic()
            pending, self._pending = self._pending, []
            records, self._records = self._records, []
            forget, self._forget = self._forget, []
            if pending:
                await asyncio.gather(*pending)
            if records:
                await self._store.save_snapshots(self._tenant_id, records)
            if forget:
                await self._store.forget_agreements(self._tenant_id, forget)


@dataclass
class RunStats:
    """What one run did; becomes `sync.poll.completed`."""

    kind: RunKind
    started_at: datetime
    seen: int = 0
    changed: int = 0
    agreements_removed: int = 0
    additions_removed: int = 0
    snapshots_read: int = 0
    swept: int = 0
    invalid: int = 0
    clients: set[str] = field(default_factory=set)
    requests: int = 0
    throttled: int = 0
    retries: int = 0
    duration_ms: int = 0
    invalid_ids: list[int] = field(default_factory=list)
    removals_held: dict[int, str] = field(default_factory=dict)
    """Agreements proven gone whose removal the budget held back -> why."""
    client_before: StatsSnapshot | None = None
    clock_before: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "started_at": self.started_at.isoformat(),
            "seen": self.seen,
            "changed": self.changed,
            "agreements_removed": self.agreements_removed,
            "additions_removed": self.additions_removed,
            "snapshots_read": self.snapshots_read,
            "swept": self.swept,
            "requests": self.requests,
            "duration_ms": self.duration_ms,
        }


def row_id(row: Json) -> int | None:
    """The positive integer `id` of a ConnectWise row, else None (dirty data is skipped, not fatal)."""
    value = row.get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def first_error(error: BaseException) -> BaseException:
    """The first leaf of an exception group (a TaskGroup wraps task errors), else `error` itself."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def pause_for(failures: int) -> timedelta:
    """Backoff of a tenant paused by 401/403: 1 min, 2, 4, ... capped at 1 h (pure)."""
    pause: timedelta = FIRST_PAUSE * (2 ** max(0, min(failures - 1, 16)))
    return min(MAX_PAUSE, pause)


class TenantPoller:
    """Polls one tenant. Runs are serialised per tenant; `run_forever` schedules them."""

    def __init__(
        self,
        tenant: TenantConfig,
        client: ConnectWiseClient,
        publisher: Publisher,
        store: PollerStore,
        *,
        instance: str = "poller",
        now: Callable[[], datetime] = utcnow,
        batch_size: int = 200,
        heartbeat_interval: timedelta = timedelta(seconds=60),
        psa_topic: str = PSA_AGREEMENTS,
        events_topic: str = SYNC_EVENTS,
    ) -> None:
        self.psa_topic = psa_topic
        self.events_topic = events_topic
        self.tenant = tenant
        self.client = client
        self.publisher = publisher
        self.store = store
        self.instance = instance
        self.now = now
        self.batch_size = batch_size
        self.heartbeat_interval = heartbeat_interval
        self.context = TenantContext(tenant.id, tenant.time_zone, tenant.default_currency)
        self.guard = RemovalGuard(tenant.removal_guard_ratio, tenant.removal_guard_floor)
        self.removal_budget = RemovalBudget(self.guard, tenant.removal_budget_window)
        self._known_total: int | None = None
        """How many agreements the poller knows for the tenant (the budget's base), as of the last
        run that loaded them all; None until one did."""
        self.auto_clients: set[str] = set()
        self.paused_until: datetime | None = None
        self.status: Literal["ok", "paused", "degraded"] = "ok"
        self.last_error: str = ""
        self._auth_failures = 0
        self._lock = asyncio.Lock()
        self._semaphore = asyncio.Semaphore(tenant.concurrency)
        self._refresh_hints: dict[str, str | None] = {}
        """Clients to refresh -> the correlation id of the first request (coalesced, bounded)."""
        self._recheck_hints: dict[int, bool] = {}
        """Agreements to re-read -> whether a `deleted` callback named it (coalesced, bounded)."""
        self.hints_dropped = 0
        self._wake = asyncio.Event()

    # -- state ---------------------------------------------------------------------------------

    async def load_state(self) -> None:
        """Restore the auto-sync client set from the store."""
        saved = await self.store.get_cursor(self.tenant.id, cursors.SCOPE_AUTO_SYNC)
        clients = saved.last_run.get("clients", [])
        self.auto_clients = {str(c) for c in clients if isinstance(c, str | int)}

    async def set_auto_sync(self, client_id: str, enabled: bool) -> bool:
        """Put a client on (or off) the auto-sync cadence; persisted. False if the client is not ours."""
        company = self.tenant.company_for(client_id)
        if company is None or not self.tenant.includes_company(company):
            log.info(
                "auto-sync command for a client this tenant does not poll", extra={"client_id": client_id}
            )
            return False
        changed = (client_id in self.auto_clients) != enabled
        if enabled:
            self.auto_clients.add(client_id)
        else:
            self.auto_clients.discard(client_id)
        if changed:
            await self.store.set_cursor(
                self.tenant.id, cursors.SCOPE_AUTO_SYNC, None, {"clients": sorted(self.auto_clients)}
            )
        self._wake.set()
        return True

    def request_refresh(self, client_id: str, correlationid: str | None) -> bool:
        """Queue a refresh of one client for the scheduling loop. Requests for a client already
        queued coalesce (the first one's correlation id is kept); a client this tenant does not
        poll is ignored. At most `MAX_REFRESH_HINTS` clients wait; beyond, the request is dropped
        (logged): a scheduled poll reads the client anyway. False when not queued."""
        company = self.tenant.company_for(client_id)
        if company is None or not self.tenant.includes_company(company):
            return False
        if client_id not in self._refresh_hints:
            if len(self._refresh_hints) >= MAX_REFRESH_HINTS:
                self._dropped("refresh")
                return False
            self._refresh_hints[client_id] = correlationid
        self._wake.set()
        return True

    def request_recheck(self, agreement_id: int, *, deleted: bool = False) -> bool:
        """Queue a callback hint: re-read one agreement (and confirm a `deleted` one by GET).
        Hints of one agreement coalesce (`deleted` if any said so); at most `MAX_RECHECK_HINTS`
        agreements wait, beyond that a hint is dropped (logged): the polls and the sweep still
        read every agreement. False when not queued."""
        if agreement_id not in self._recheck_hints and len(self._recheck_hints) >= MAX_RECHECK_HINTS:
            self._dropped("recheck")
            return False
        self._recheck_hints[agreement_id] = self._recheck_hints.get(agreement_id, False) or deleted
        self._wake.set()
        return True

    def _dropped(self, kind: str) -> None:
        self.hints_dropped += 1
        log.warning("hint dropped: too many waiting", extra={"tenant_id": self.tenant.id, "kind": kind})

    @property
    def hints_waiting(self) -> int:
        return len(self._refresh_hints) + len(self._recheck_hints)

    def wake(self) -> None:
        self._wake.set()

    # -- runs ----------------------------------------------------------------------------------

    async def _run(
        self,
        kind: RunKind,
        body: Callable[[RunStats, Emitter], Coroutine[Any, Any, None]],
        *,
        correlationid: str | None = None,
    ) -> RunStats:
        async with self._lock:
            stats = RunStats(kind, self.now())
            stats.client_before = self.client.stats.snapshot()
            stats.clock_before = asyncio.get_running_loop().time()
            emitter = Emitter(
                self.publisher,
                self.store,
                self.tenant.id,
                self.batch_size,
                psa_topic=self.psa_topic,
                events_topic=self.events_topic,
            )
            try:
                await body(stats, emitter)
                await emitter.flush()
            except BaseException as error:
                # keep what Kafka already acknowledged; the watermark stays where it was
                with contextlib.suppress(Exception):
                    await asyncio.shield(emitter.flush())
                cause = first_error(error)
                if cause is not error and isinstance(cause, Exception):
                    raise cause from error
                raise
            self._measure(stats)
            if stats.removals_held:
                held = sorted(stats.removals_held)
                await self._failed(
                    f"poller.{kind}",
                    "removal_guard",
                    f"{len(held)} removal(s) held back although ConnectWise answered NotFound: "
                    f"{next(iter(stats.removals_held.values()))}; held: {held[:50]}",
                    retryable=True,
                    operator_action=(
                        "Check that the ConnectWise API member still sees every agreement (security role, "
                        "Level/Location/Department limits). Held agreements stay known and are confirmed "
                        "again later; raise removal_guard_ratio only if these deletions are real."
                    ),
                    correlationid=correlationid,
                )
            if stats.invalid_ids:
                ids = sorted(set(stats.invalid_ids))
                await self._failed(
                    f"poller.{kind}",
                    "invalid_psa_data",
                    f"{len(ids)} agreement(s) skipped: ConnectWise sent data the wire contract cannot carry "
                    f"(no company, or a field of an unexpected type/value): {ids[:50]}",
                    retryable=False,
                    operator_action=(
                        "Open these agreements in ConnectWise and check their company and status fields; "
                        "the poller logs name the fields. They are read again once edited."
                    ),
                    correlationid=correlationid,
                )
            await self._publish_sync(self._poll_completed(stats), correlationid)
            log.info(
                "poll run completed",
                extra={"tenant_id": self.tenant.id, **stats.summary()},
            )
            return stats

    def _measure(self, stats: RunStats) -> None:
        """Fill the run's request counters and duration from the client's counters."""
        if stats.client_before is not None:
            delta = self.client.stats.snapshot() - stats.client_before
            stats.requests, stats.throttled, stats.retries = delta.requests, delta.throttled, delta.retries
        stats.duration_ms = int((asyncio.get_running_loop().time() - stats.clock_before) * 1000)

    async def poll_once(self, scope: str = cursors.SCOPE_ALL) -> RunStats | None:
        """One incremental run of `scope` (`incremental:all` or `incremental:auto`).

        Returns None when there is nothing to do (the auto scope without auto-sync clients, or
        before the first full run). Raises `ConnectWiseError` on failures (nothing advanced).
        """
        companies: tuple[int, ...] | None
        if scope == cursors.SCOPE_AUTO:
            wanted = sorted(
                {c for c in (self.tenant.company_for(x) for x in self.auto_clients) if c is not None}
            )
            if not wanted:
                return None
            companies = tuple(wanted)
        else:
            companies = self.tenant.company_ids
        cursor = await self.store.get_cursor(self.tenant.id, scope)
        watermark = cursor.watermark
        if scope == cursors.SCOPE_AUTO and watermark is None:
            # start the fast cadence from the full scope's position instead of a second full import
            watermark = (await self.store.get_cursor(self.tenant.id, cursors.SCOPE_ALL)).watermark
            if watermark is None:
                return None

        async def body(stats: RunStats, emitter: Emitter) -> None:
            since = cursors.window_start(watermark, self.tenant.overlap)
            known = await self.store.known_agreements(self.tenant.id)
            self._known_total = len(known)
            read_now: set[int] = set()
            async with asyncio.TaskGroup() as tasks:
                for condition in cursors.incremental_conditions(since, companies):
                    async for raw in self._agreement_rows(condition):
                        agreement_id = row_id(raw)
                        if agreement_id is None:
                            continue
                        stats.seen += 1
                        previous = known.get(agreement_id)
                        if agreement_id not in read_now and needs_additions_read(raw, previous):
                            read_now.add(agreement_id)
                            tasks.create_task(self._read_and_observe(raw, previous, stats, emitter))
                if scope == cursors.SCOPE_ALL:
                    sweep = await self.store.get_cursor(self.tenant.id, cursors.SCOPE_SWEEP)
                    candidates = [
                        k for k, v in known.items() if k not in read_now and self._in_scope(v.client_id)
                    ]
                    for agreement_id in due_for_sweep(
                        candidates, sweep.watermark, stats.started_at, self.tenant.additions_sweep_period
                    ):
                        tasks.create_task(self._sweep_one(agreement_id, known[agreement_id], stats, emitter))
            await emitter.flush()
            self._measure(stats)
            summary = stats.summary()
            await self.store.set_cursor(
                self.tenant.id, scope, cursors.advance(cursor.watermark, stats.started_at), summary
            )
            if scope == cursors.SCOPE_ALL:
                await self.store.set_cursor(self.tenant.id, cursors.SCOPE_SWEEP, stats.started_at, summary)

        return await self._run("incremental", body)

    async def refresh_client(self, client_id: str, correlationid: str | None = None) -> RunStats | None:
        """Re-read every agreement of one client and all their additions now (`sync.command.refresh`).

        Emits what changed and confirms (by 404) removals of the client's agreements that are gone.
        Returns None for a client this tenant does not poll.
        """
        company = self.tenant.company_for(client_id)
        if company is None or not self.tenant.includes_company(company):
            log.info("refresh for a client this tenant does not poll", extra={"client_id": client_id})
            return None

        async def body(stats: RunStats, emitter: Emitter) -> None:
            known = await self.store.known_agreements(self.tenant.id)
            self._known_total = len(known)
            mine = {k: v for k, v in known.items() if v.client_id == client_id}
            listed: set[int] = set()
            stats.clients.add(client_id)
            async with asyncio.TaskGroup() as tasks:
                async for raw in self._agreement_rows(cond.eq("company/id", company)):
                    agreement_id = row_id(raw)
                    if agreement_id is None:
                        continue
                    stats.seen += 1
                    listed.add(agreement_id)
                    tasks.create_task(
                        self._read_and_observe(
                            raw, known.get(agreement_id), stats, emitter, correlationid=correlationid
                        )
                    )
            plan = plan_removals(mine.keys(), listed, self.guard)
            if not plan.ok:
                await self._failed(
                    "poller.refresh",
                    "removal_guard",
                    f"client {client_id}: {plan.refused}",
                    retryable=True,
                    operator_action="Check the API member's access to this company's agreements; nothing was removed.",
                    emitter=emitter,
                    correlationid=correlationid,
                )
            for agreement_id in plan.candidates:
                await self._confirm_agreement_removed(agreement_id, client_id, stats, emitter, correlationid)

        return await self._run("refresh", body, correlationid=correlationid)

    async def reconcile(self) -> RunStats:
        """Find removed agreements: list every id in scope (`fields=id`), confirm each missing one by
        a direct GET answering 404. A suspicious listing (empty, or above the guard) removes nothing
        and raises `sync.failed`; an error (401/403/5xx) propagates and removes nothing more."""

        async def body(stats: RunStats, emitter: Emitter) -> None:
            everything = await self.store.known_agreements(self.tenant.id)
            self._known_total = len(everything)
            known = {k: v for k, v in everything.items() if self._in_scope(v.client_id)}
            listed: set[int] = set()
            for condition in cursors.company_filters(self.tenant.company_ids):
                async for raw in self._agreement_rows(condition, fields=["id"]):
                    agreement_id = row_id(raw)
                    if agreement_id is not None:
                        listed.add(agreement_id)
            stats.seen = len(listed)
            plan = plan_removals(known.keys(), listed, self.guard)
            if not plan.ok:
                await self._failed(
                    "poller.reconcile",
                    "removal_guard",
                    plan.refused or "refused",
                    retryable=True,
                    operator_action=(
                        "Check that the ConnectWise API member still sees every agreement (security role "
                        "Finance > Agreements: Inquire Level All, and its Level/Location/Department limits); "
                        "nothing was removed."
                    ),
                    emitter=emitter,
                )
            else:
                async with asyncio.TaskGroup() as tasks:
                    for agreement_id in plan.candidates:
                        tasks.create_task(
                            self._confirm_agreement_removed(
                                agreement_id, known[agreement_id].client_id, stats, emitter, None
                            )
                        )
            await emitter.flush()
            self._measure(stats)
            await self.store.set_cursor(
                self.tenant.id, cursors.SCOPE_RECONCILE, stats.started_at, stats.summary()
            )

        return await self._run("reconcile", body)

    async def recheck_agreement(self, agreement_id: int, *, deleted: bool = False) -> RunStats:
        """A callback hint: re-read one agreement and its additions; a 404 confirms its removal."""

        async def body(stats: RunStats, emitter: Emitter) -> None:
            # one row, not the tenant's whole table: callbacks arrive one by one
            known = (await self.store.known_agreements(self.tenant.id, [agreement_id])).get(agreement_id)
            try:
                async with self._semaphore:
                    agreement = (await self.client.get_agreement(agreement_id)).raw
            except ConnectWiseNotFoundError as proof:
                if known is not None and known.client_id is not None:
                    await self._remove_agreement(
                        agreement_id, known.client_id, stats, emitter, None, proof, after_callback=deleted
                    )
                return
            stats.seen = 1
            await self._read_and_observe(agreement, known, stats, emitter)

        return await self._run("callback", body)

    # -- per-agreement steps ---------------------------------------------------------------------

    def _in_scope(self, client_id: str | None) -> bool:
        if client_id is None:
            return False
        company = self.tenant.company_for(client_id)
        return company is not None and self.tenant.includes_company(company)

    async def _agreement_rows(
        self, condition: cond.Condition | None, *, fields: list[str] | None = None
    ) -> AsyncIterator[Json]:
        """Agreements as the raw JSON objects ConnectWise sent, 1,000 per page."""
        async for page in self.client.iter_pages(
            "/finance/agreements",
            conditions=condition,
            fields=fields,
            page_size=PAGE_SIZE,
            paging=self.tenant.paging,
        ):
            for raw in page:
                yield raw

    async def _read_additions(self, agreement_id: int) -> list[Json] | None:
        """All additions of one agreement; None when the agreement itself is gone (404)."""
        async with self._semaphore:
            try:
                path = f"/finance/agreements/{agreement_id}/additions"
                rows: list[Json] = []
                async for page in self.client.iter_pages(
                    path, page_size=PAGE_SIZE, paging=self.tenant.paging
                ):
                    rows.extend(page)
                return rows
            except ConnectWiseNotFoundError:
                return None

    async def _read_and_observe(
        self,
        agreement: Json,
        known: KnownAgreement | None,
        stats: RunStats,
        emitter: Emitter,
        *,
        correlationid: str | None = None,
    ) -> None:
        agreement_id = int(agreement["id"])
        additions = await self._read_additions(agreement_id)
        if additions is None:
            if known is not None and known.client_id is not None:
                await self._confirm_agreement_removed(
                    agreement_id, known.client_id, stats, emitter, correlationid
                )
            return
        await self._observe(agreement, additions, known, stats, emitter, correlationid=correlationid)

    async def _sweep_one(
        self, agreement_id: int, known: KnownAgreement, stats: RunStats, emitter: Emitter
    ) -> None:
        stats.swept += 1
        additions = await self._read_additions(agreement_id)
        if additions is None:
            if known.client_id is not None:
                await self._confirm_agreement_removed(agreement_id, known.client_id, stats, emitter, None)
            return
        if known.digest is not None and additions_digest(additions) == known.digest.additions:
            return
        try:
            async with self._semaphore:
                agreement = (await self.client.get_agreement(agreement_id)).raw
        except ConnectWiseNotFoundError as proof:
            if known.client_id is not None:
                await self._remove_agreement(agreement_id, known.client_id, stats, emitter, None, proof)
            return
        await self._observe(agreement, additions, known, stats, emitter)

    async def _observe(
        self,
        agreement: Json,
        additions: list[Json],
        known: KnownAgreement | None,
        stats: RunStats,
        emitter: Emitter,
        *,
        correlationid: str | None = None,
    ) -> None:
        stats.snapshots_read += 1
        agreement_id = int(agreement["id"])
        company = company_id_of(agreement)
        if company is None:
            stats.invalid += 1
            stats.invalid_ids.append(agreement_id)
            log.warning("agreement without a company id is skipped", extra={"agreement_id": agreement_id})
            return
        if not self.tenant.includes_company(company):
            return
        client_id = self.tenant.client_id_for(company)
        if known is not None and known.client_id not in (None, client_id):
            log.info(
                "agreement moved to another client",
                extra={"agreement_id": agreement_id, "from_client": known.client_id, "to_client": client_id},
            )
        digest = snapshot_digest(agreement, additions)
        if not is_changed(digest, known):
            return
        observed_at = self.now()
        try:
            event = build_observed(
                self.context, client_id, agreement, additions, observed_at, correlationid=correlationid
            )
        except ValidationError as error:
            stats.invalid += 1
            stats.invalid_ids.append(agreement_id)
            log.warning(
                "agreement snapshot does not fit the wire contract; skipped",
                extra={"agreement_id": agreement_id, "errors": error.error_count()},
            )
            return
        current_ids = addition_ids_of(additions)
        await emitter.observed(
            event,
            KnownAgreement(agreement_id, client_id, digest, event.data.psa_last_updated, current_ids),
        )
        stats.changed += 1
        stats.clients.add(client_id)
        for addition_id in removed_addition_ids(known.addition_ids if known else None, current_ids):
            await self._confirm_addition_removed(
                agreement_id, addition_id, client_id, stats, emitter, correlationid
            )

    async def _confirm_agreement_removed(
        self,
        agreement_id: int,
        client_id: str | None,
        stats: RunStats,
        emitter: Emitter,
        correlationid: str | None,
    ) -> bool:
        """GET the agreement: only ConnectWise's NotFound leads to `_remove_agreement`. Other
        errors (a 404 without that body included) propagate: the run fails, nothing is removed."""
        if client_id is None:
            return False
        try:
            async with self._semaphore:
                await self.client.get_agreement(agreement_id, fields=["id"])
        except ConnectWiseNotFoundError as proof:
            return await self._remove_agreement(agreement_id, client_id, stats, emitter, correlationid, proof)
        return False

    async def _known_count(self) -> int:
        if self._known_total is None:
            self._known_total = len(await self.store.known_agreements(self.tenant.id))
        return self._known_total

    async def _remove_agreement(
        self,
        agreement_id: int,
        client_id: str,
        stats: RunStats,
        emitter: Emitter,
        correlationid: str | None,
        proof: ConnectWiseNotFoundError,
        *,
        after_callback: bool = False,
    ) -> bool:
        """The one removal guard every path goes through: emit `psa.agreement.removed` only with
        ConnectWise's own NotFound as proof and within the removal budget (per run, per tenant).
        A removal over budget is held: not emitted, the agreement stays known (`stats.removals_held`,
        reported as `sync.failed` at the end of the run). True when the removal was emitted."""
        if not proof.proves_absence:  # the client never raises NotFound without it: a second line
            raise proof
        held = self.removal_budget.take(self.now(), await self._known_count(), stats.agreements_removed)
        if held is not None:
            stats.removals_held[agreement_id] = held
            log.warning(
                "agreement removal held by the removal budget",
                extra={"tenant_id": self.tenant.id, "agreement_id": agreement_id, "reason": held},
            )
            return False
        evidence = evidence_404(f"/finance/agreements/{agreement_id}", after_callback=after_callback)
        event = build_agreement_removed(
            self.context, client_id, agreement_id, self.now(), evidence, correlationid=correlationid
        )
        await emitter.removed(event, forget_agreement=agreement_id)
        stats.agreements_removed += 1
        stats.clients.add(client_id)
        return True

    async def _confirm_addition_removed(
        self,
        agreement_id: int,
        addition_id: int,
        client_id: str,
        stats: RunStats,
        emitter: Emitter,
        correlationid: str | None,
    ) -> None:
        path = f"/finance/agreements/{agreement_id}/additions/{addition_id}"
        try:
            async with self._semaphore:
                await self.client.get_addition(agreement_id, addition_id, fields=["id"])
        except ConnectWiseNotFoundError:
            event = build_addition_removed(
                self.context, client_id, agreement_id, addition_id, self.now(), evidence_404(path),
                correlationid=correlationid,
            )  # fmt: skip
            await emitter.removed(event)
            stats.additions_removed += 1

    # -- sync events ---------------------------------------------------------------------------

    def _poll_completed(self, stats: RunStats) -> PollCompletedData:
        return PollCompletedData(
            tenant_id=self.tenant.id,
            client_id=ALL_CLIENTS,
            run_kind=stats.kind,
            clients_touched=sorted(stats.clients)[:1000],
            agreements_seen=stats.seen,
            agreements_changed=stats.changed,
            agreements_removed=stats.agreements_removed,
            additions_removed=stats.additions_removed,
            api_requests=stats.requests,
            throttled_requests=stats.throttled,
            retries=stats.retries,
            duration_ms=stats.duration_ms,
            started_at=stats.started_at,
        )

    async def _publish_sync(
        self, data: PollCompletedData | SyncFailedData | HeartbeatData, correlationid: str | None = None
    ) -> None:
        event: CloudEvent
        if isinstance(data, PollCompletedData):
            event = PollCompleted.build(data, source=SOURCE, correlationid=correlationid)
        elif isinstance(data, SyncFailedData):
            event = SyncFailed.build(data, source=SOURCE, correlationid=correlationid)
        else:
            event = Heartbeat.build(data, source=SOURCE, correlationid=correlationid)
        await (await self.publisher.send(self.events_topic, event))
        EVENTS_PRODUCED.labels("poller", self.events_topic, event.type).inc()

    async def _failed(
        self,
        stage: str,
        error_code: str,
        message: str,
        *,
        retryable: bool,
        operator_action: str,
        emitter: Emitter | None = None,
        correlationid: str | None = None,
    ) -> None:
        data = SyncFailedData(
            tenant_id=self.tenant.id,
            client_id=ALL_CLIENTS,
            stage=stage,
            error_code=error_code,
            message=message[:2000],
            retryable=retryable,
            operator_action=operator_action[:2000],
        )
        log.warning(
            "sync failed", extra={"tenant_id": self.tenant.id, "stage": stage, "error_code": error_code}
        )
        if emitter is not None:
            await emitter.sync_event(SyncFailed.build(data, source=SOURCE, correlationid=correlationid))
        else:
            await self._publish_sync(data, correlationid)

    async def heartbeat(self) -> None:
        detail = self.last_error
        if self.status == "paused" and self.paused_until is not None:
            detail = f"paused until {self.paused_until.isoformat()}: {self.last_error}"
        await self._publish_sync(
            HeartbeatData(
                tenant_id=self.tenant.id,
                client_id=ALL_CLIENTS,
                service="poller",
                instance=self.instance,
                status=self.status,
                detail=detail[:500],
            )
        )

    # -- failure handling and scheduling -----------------------------------------------------------

    async def guarded(
        self, stage: str, run: Callable[[], Awaitable[Any]], correlationid: str | None = None
    ) -> bool:
        """Run `run`; turn failures into `sync.failed` (and a pause on 401/403). True on success."""
        try:
            await run()
        except ConnectWiseError as error:
            fields = error.to_event_fields()
            if isinstance(error, ConnectWiseAuthenticationError | ConnectWisePermissionError):
                self._auth_failures += 1
                self.paused_until = self.now() + pause_for(self._auth_failures)
                self.status = "paused"
                TENANT_PAUSED.labels(self.tenant.id).set(1)
            else:
                self.status = "degraded"
            self.last_error = str(fields["message"])[:500]
            await self._safe_failed(stage, fields["error_code"], fields["message"], fields["retryable"],
                                    fields["operator_action"], correlationid)  # fmt: skip
            return False
        except Exception as error:
            if isinstance(error, asyncio.CancelledError):
                raise
            log.exception("poller run failed", extra={"tenant_id": self.tenant.id, "stage": stage})
            self.status = "degraded"
            self.last_error = type(error).__name__
            await self._safe_failed(
                stage, type(error).__name__, f"{type(error).__name__} in {stage}", True,
                "Check the poller logs; the run is retried on the next cycle.", correlationid,
            )  # fmt: skip
            return False
        self._auth_failures = 0
        self.paused_until = None
        self.status = "ok"
        self.last_error = ""
        TENANT_PAUSED.labels(self.tenant.id).set(0)
        if stage == "poller.poll":
            LAST_SUCCESSFUL_POLL.labels(self.tenant.id).set(time.time())
        return True

    async def _safe_failed(
        self, stage: str, code: str, message: str, retryable: bool, action: str, correlationid: str | None
    ) -> None:
        try:
            await self._failed(
                stage, code, message, retryable=retryable, operator_action=action, correlationid=correlationid
            )
        except Exception:
            log.exception(
                "could not publish sync.failed", extra={"tenant_id": self.tenant.id, "stage": stage}
            )

    async def _drain_hints(self, limit: int = HINTS_PER_TURN) -> None:
        """Run at most `limit` waiting hints (refreshes first, then rechecks, oldest first): the
        scheduling loop checks its scheduled runs between turns, so hints never starve them."""
        for _ in range(limit):
            if self._refresh_hints:
                client_id = next(iter(self._refresh_hints))
                correlationid = self._refresh_hints.pop(client_id)
                await self.guarded(
                    "poller.refresh",
                    functools.partial(self.refresh_client, client_id, correlationid),
                    correlationid,
                )
            elif self._recheck_hints:
                agreement_id = next(iter(self._recheck_hints))
                deleted = self._recheck_hints.pop(agreement_id)
                await self.guarded(
                    "poller.callback",
                    functools.partial(self.recheck_agreement, agreement_id, deleted=deleted),
                )
            else:
                return

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Schedule runs until `stop` is set: the full scope every `poll_interval`, auto-sync clients
        every `auto_sync_interval`, the reconcile every `reconcile_interval`, heartbeats, and queued
        refreshes/callback hints as soon as possible. A paused tenant only sends heartbeats."""
        await self.load_state()
        reconcile = await self.store.get_cursor(self.tenant.id, cursors.SCOPE_RECONCILE)
        now = self.now()
        next_all = now
        next_auto = now + self.tenant.auto_sync_interval
        next_reconcile = (reconcile.watermark or now) + self.tenant.reconcile_interval
        if reconcile.watermark is None:
            await self.store.set_cursor(self.tenant.id, cursors.SCOPE_RECONCILE, now, {"kind": "schedule"})
        next_heartbeat = now
        while not stop.is_set():
            now = self.now()
            if now >= next_heartbeat:
                with contextlib.suppress(Exception):
                    await self.heartbeat()
                next_heartbeat = now + self.heartbeat_interval
            paused = self.paused_until is not None and now < self.paused_until
            if not paused:
                await self._drain_hints()
                if now >= next_all:
                    await self.guarded("poller.poll", lambda: self.poll_once(cursors.SCOPE_ALL))
                    next_all = self.now() + self.tenant.poll_interval
                    next_auto = max(next_auto, self.now() + self.tenant.auto_sync_interval)
                elif now >= next_auto:
                    await self.guarded("poller.poll", lambda: self.poll_once(cursors.SCOPE_AUTO))
                    next_auto = self.now() + self.tenant.auto_sync_interval
                if self.now() >= next_reconcile and not stop.is_set():
                    await self.guarded("poller.reconcile", self.reconcile)
                    next_reconcile = self.now() + self.tenant.reconcile_interval
            deadline = min(next_heartbeat, next_all, next_reconcile)
            if self.auto_clients:
                deadline = min(deadline, next_auto)
            if self.paused_until is not None and self.now() < self.paused_until:
                deadline = min(next_heartbeat, self.paused_until)
            timeout = max(0.0, (deadline - self.now()).total_seconds())
            if stop.is_set():
                break
            self._wake.clear()
            if self.hints_waiting:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)


def tenant_pollers_by_id(pollers: Iterable[TenantPoller]) -> Mapping[str, TenantPoller]:
    return {p.tenant.id: p for p in pollers}
