"""Poller orchestration for one tenant (`TenantPoller`): its runs and the loop that schedules them.

Every run follows the same rules:
- Snapshots are read concurrently (bounded by the tenant's `concurrency`), each agreement with all
  its additions; a snapshot is emitted as `psa.agreement.observed` only when its digest differs
  from the last one emitted (`snapshots.SnapshotReader`).
- A snapshot's digest is recorded only after Kafka acknowledged its event (`emitter.Emitter`), and
  a scope's watermark moves only after the whole run succeeded and everything was acknowledged.
  A crash therefore re-emits at most the events whose digests were not yet recorded, and a failed
  or abandoned run (SIGTERM, cancellation, an error) leaves its watermark where it was.
- Nothing is ever removed because of an error or an absence: a removal event needs a direct GET
  that answered ConnectWise's own JSON NotFound (`ConnectWiseNotFoundError.proves_absence`; any
  other 404 is a `ConnectWiseForeignNotFoundError` and fails the run). Every path that removes an
  agreement (incremental read, sweep, refresh, reconcile, callback) goes through one guard,
  `removals.RemovalChecks`: the proof, then the removal budget per run and per tenant
  (`reconcile.RemovalBudget`); a removal over budget is held and the run raises `sync.failed`.
- 401/403 pause the tenant with exponential backoff and raise `sync.failed` naming the fix; other
  failures raise `sync.failed` (retryable) and the next cycle tries again (`failures.TenantHealth`).

Run kinds and what they read (each run's shared state is one `run.PollRun`):
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
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from schemas.envelope import utcnow
from schemas.topics import PSA_AGREEMENTS, SYNC_EVENTS
from services.common.metrics import LAST_SUCCESSFUL_POLL
from services.poller import cursor as cursors
from services.poller.changes import TenantContext, needs_additions_read
from services.poller.connectwise import ConnectWiseClient, ConnectWiseError, ConnectWiseNotFoundError
from services.poller.connectwise import conditions as cond
from services.poller.emitter import Emitter
from services.poller.failures import Status, TenantHealth, first_error
from services.poller.hints import Hints, RecheckHint, RefreshHint
from services.poller.publisher import Publisher
from services.poller.reconcile import RemovalBudget, RemovalGuard, plan_removals
from services.poller.removals import RemovalChecks
from services.poller.run import PollRun, RunKind, RunStats, row_id
from services.poller.snapshots import SnapshotReader
from services.poller.store import PollerStore
from services.poller.sweep import due_for_sweep
from services.poller.sync_events import SyncEvents
from services.poller.tenants import TenantConfig

log = logging.getLogger(__name__)

HINTS_PER_TURN = 10
"""Hints run per turn of the scheduling loop before it checks whether a scheduled run is due."""


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
        self.auto_clients: set[str] = set()
        self.health = TenantHealth(tenant.id)
        self.events = SyncEvents(tenant.id, publisher, events_topic, instance)
        self.hints = Hints(tenant.id)
        self._lock = asyncio.Lock()
        semaphore = asyncio.Semaphore(tenant.concurrency)
        self.removals = RemovalChecks(self.context, client, store, self.removal_budget, semaphore, now)
        self.reader = SnapshotReader(tenant, self.context, client, semaphore, self.removals, now)
        self._wake = asyncio.Event()

    # -- state ---------------------------------------------------------------------------------

    @property
    def status(self) -> Status:
        return self.health.status

    @property
    def paused_until(self) -> datetime | None:
        return self.health.paused_until

    @property
    def last_error(self) -> str:
        return self.health.last_error

    async def load_state(self) -> None:
        """Restore the auto-sync client set from the store."""
        saved = await self.store.get_cursor(self.tenant.id, cursors.SCOPE_AUTO_SYNC)
        clients = saved.last_run.get("clients", [])
        self.auto_clients = {str(c) for c in clients if isinstance(c, str | int)}

    async def set_auto_sync(self, client_id: str, enabled: bool) -> bool:
        """Put a client on (or off) the auto-sync cadence; persisted. False if the client is not ours."""
        if not self._in_scope(client_id):
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
        """Queue a refresh of one client for the scheduling loop (`hints.Hints`: coalesced per
        client, bounded). A client this tenant does not poll is ignored. False when not queued."""
        if not self._in_scope(client_id) or not self.hints.add_refresh(client_id, correlationid):
            return False
        self._wake.set()
        return True

    def request_recheck(self, agreement_id: int, *, deleted: bool = False) -> bool:
        """Queue a callback hint: re-read one agreement (and confirm a `deleted` one by GET);
        coalesced per agreement, bounded (`hints.Hints`). False when not queued."""
        if not self.hints.add_recheck(agreement_id, deleted=deleted):
            return False
        self._wake.set()
        return True

    @property
    def hints_waiting(self) -> int:
        return self.hints.waiting

    @property
    def hints_dropped(self) -> int:
        return self.hints.dropped

    def wake(self) -> None:
        self._wake.set()

    def _in_scope(self, client_id: str | None) -> bool:
        if client_id is None:
            return False
        company = self.tenant.company_for(client_id)
        return company is not None and self.tenant.includes_company(company)

    # -- runs ----------------------------------------------------------------------------------

    async def _run(
        self,
        kind: RunKind,
        body: Callable[[PollRun], Coroutine[Any, Any, None]],
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
            run = PollRun(stats, emitter, correlationid)
            try:
                await body(run)
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
            await self.events.run_findings(stats, correlationid)
            await self.events.completed(stats, correlationid)
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

        async def body(run: PollRun) -> None:
            stats = run.stats
            since = cursors.window_start(watermark, self.tenant.overlap)
            known = await self.store.known_agreements(self.tenant.id)
            self.removals.known_total = len(known)
            read_now: set[int] = set()
            async with asyncio.TaskGroup() as tasks:
                for condition in cursors.incremental_conditions(since, companies):
                    async for raw in self.reader.agreement_rows(condition):
                        agreement_id = row_id(raw)
                        if agreement_id is None:
                            continue
                        stats.seen += 1
                        previous = known.get(agreement_id)
                        if agreement_id not in read_now and needs_additions_read(raw, previous):
                            read_now.add(agreement_id)
                            tasks.create_task(self.reader.read_and_observe(run, raw, previous))
                if scope == cursors.SCOPE_ALL:
                    sweep = await self.store.get_cursor(self.tenant.id, cursors.SCOPE_SWEEP)
                    candidates = [
                        k for k, v in known.items() if k not in read_now and self._in_scope(v.client_id)
                    ]
                    for agreement_id in due_for_sweep(
                        candidates, sweep.watermark, stats.started_at, self.tenant.additions_sweep_period
                    ):
                        tasks.create_task(self.reader.sweep_one(run, agreement_id, known[agreement_id]))
            await run.emitter.flush()
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

        async def body(run: PollRun) -> None:
            stats = run.stats
            known = await self.store.known_agreements(self.tenant.id)
            self.removals.known_total = len(known)
            mine = {k: v for k, v in known.items() if v.client_id == client_id}
            listed: set[int] = set()
            stats.clients.add(client_id)
            async with asyncio.TaskGroup() as tasks:
                async for raw in self.reader.agreement_rows(cond.eq("company/id", company)):
                    agreement_id = row_id(raw)
                    if agreement_id is None:
                        continue
                    stats.seen += 1
                    listed.add(agreement_id)
                    tasks.create_task(self.reader.read_and_observe(run, raw, known.get(agreement_id)))
            plan = plan_removals(mine.keys(), listed, self.guard)
            if not plan.ok:
                await self.events.failed(
                    "poller.refresh",
                    "removal_guard",
                    f"client {client_id}: {plan.refused}",
                    retryable=True,
                    operator_action="Check the API member's access to this company's agreements; nothing was removed.",
                    emitter=run.emitter,
                    correlationid=correlationid,
                )
            for agreement_id in plan.candidates:
                await self.removals.confirm_agreement_removed(run, agreement_id, client_id)

        return await self._run("refresh", body, correlationid=correlationid)

    async def reconcile(self) -> RunStats:
        """Find removed agreements: list every id in scope (`fields=id`), confirm each missing one by
        a direct GET answering 404. A suspicious listing (empty, or above the guard) removes nothing
        and raises `sync.failed`; an error (401/403/5xx) propagates and removes nothing more."""

        async def body(run: PollRun) -> None:
            stats = run.stats
            everything = await self.store.known_agreements(self.tenant.id)
            self.removals.known_total = len(everything)
            known = {k: v for k, v in everything.items() if self._in_scope(v.client_id)}
            listed: set[int] = set()
            for condition in cursors.company_filters(self.tenant.company_ids):
                async for raw in self.reader.agreement_rows(condition, fields=["id"]):
                    agreement_id = row_id(raw)
                    if agreement_id is not None:
                        listed.add(agreement_id)
            stats.seen = len(listed)
            plan = plan_removals(known.keys(), listed, self.guard)
            if not plan.ok:
                await self.events.failed(
                    "poller.reconcile",
                    "removal_guard",
                    plan.refused or "refused",
                    retryable=True,
                    operator_action=(
                        "Check that the ConnectWise API member still sees every agreement (security role "
                        "Finance > Agreements: Inquire Level All, and its Level/Location/Department limits); "
                        "nothing was removed."
                    ),
                    emitter=run.emitter,
                )
            else:
                async with asyncio.TaskGroup() as tasks:
                    for agreement_id in plan.candidates:
                        tasks.create_task(
                            self.removals.confirm_agreement_removed(
                                run, agreement_id, known[agreement_id].client_id
                            )
                        )
            await run.emitter.flush()
            self._measure(stats)
            await self.store.set_cursor(
                self.tenant.id, cursors.SCOPE_RECONCILE, stats.started_at, stats.summary()
            )

        return await self._run("reconcile", body)

    async def recheck_agreement(self, agreement_id: int, *, deleted: bool = False) -> RunStats:
        """A callback hint: re-read one agreement and its additions; a 404 confirms its removal."""

        async def body(run: PollRun) -> None:
            # one row, not the tenant's whole table: callbacks arrive one by one
            known = (await self.store.known_agreements(self.tenant.id, [agreement_id])).get(agreement_id)
            try:
                async with self.reader.semaphore:
                    agreement = (await self.client.get_agreement(agreement_id)).raw
            except ConnectWiseNotFoundError as proof:
                if known is not None and known.client_id is not None:
                    await self.removals.remove_agreement(
                        run, agreement_id, known.client_id, proof, after_callback=deleted
                    )
                return
            run.stats.seen = 1
            await self.reader.read_and_observe(run, agreement, known)

        return await self._run("callback", body)

    # -- heartbeats, failure handling and scheduling ---------------------------------------------

    async def heartbeat(self) -> None:
        await self.events.heartbeat(self.health.status, self.health.detail())

    async def guarded(
        self, stage: str, run: Callable[[], Awaitable[Any]], correlationid: str | None = None
    ) -> bool:
        """Run `run`; turn failures into `sync.failed` (and a pause on 401/403, `failures.TenantHealth`).
        True on success; cancellation is raised."""
        try:
            await run()
        except Exception as error:
            if not isinstance(error, ConnectWiseError):
                log.exception("poller run failed", extra={"tenant_id": self.tenant.id, "stage": stage})
            failure = self.health.failed(error, stage, self.now())
            await self.events.failed_quietly(stage, failure, correlationid)
            return False
        self.health.succeeded()
        if stage == "poller.poll":
            LAST_SUCCESSFUL_POLL.labels(self.tenant.id).set(time.time())
        return True

    async def _drain_hints(self, limit: int = HINTS_PER_TURN) -> None:
        """Run at most `limit` waiting hints (refreshes first, then rechecks, oldest first): the
        scheduling loop checks its scheduled runs between turns, so hints never starve them."""
        for _ in range(limit):
            hint = self.hints.next()
            if isinstance(hint, RefreshHint):
                await self.guarded(
                    "poller.refresh",
                    functools.partial(self.refresh_client, hint.client_id, hint.correlationid),
                    hint.correlationid,
                )
            elif isinstance(hint, RecheckHint):
                await self.guarded(
                    "poller.callback",
                    functools.partial(self.recheck_agreement, hint.agreement_id, deleted=hint.deleted),
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
            paused = self.health.is_paused(now)
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
            if self.health.is_paused(self.now()) and self.paused_until is not None:
                deadline = min(next_heartbeat, self.paused_until)
            timeout = max(0.0, (deadline - self.now()).total_seconds())
            if stop.is_set():
                break
            self._wake.clear()
            if self.hints_waiting:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
