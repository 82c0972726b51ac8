"""Removal checks of one tenant: only ConnectWise's own NotFound proves an agreement or addition
gone, and every agreement removal passes the tenant's removal budget (`RemovalChecks`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from services.poller.changes import (
    TenantContext,
    build_addition_removed,
    build_agreement_removed,
    evidence_404,
)
from services.poller.connectwise import ConnectWiseClient, ConnectWiseNotFoundError
from services.poller.reconcile import RemovalBudget
from services.poller.run import PollRun
from services.poller.store import PollerStore

log = logging.getLogger(__name__)


class RemovalChecks:
    """The one way any run (incremental read, sweep, refresh, reconcile, callback) removes something.

    `known_total` is how many agreements the poller knows for the tenant (the budget's base), as of
    the last run that loaded them all; None until one did (then it is counted in the store)."""

    def __init__(
        self,
        context: TenantContext,
        client: ConnectWiseClient,
        store: PollerStore,
        budget: RemovalBudget,
        semaphore: asyncio.Semaphore,
        now: Callable[[], datetime],
    ) -> None:
        self.context = context
        self.client = client
        self.store = store
        self.budget = budget
        self.semaphore = semaphore
        self.now = now
        self.known_total: int | None = None

    async def known_count(self) -> int:
        if self.known_total is None:
            self.known_total = len(await self.store.known_agreements(self.context.tenant_id))
        return self.known_total

    async def confirm_agreement_removed(self, run: PollRun, agreement_id: int, client_id: str | None) -> bool:
        """GET the agreement: only ConnectWise's NotFound leads to `remove_agreement`. Other
        errors (a 404 without that body included) propagate: the run fails, nothing is removed."""
        if client_id is None:
            return False
        try:
            async with self.semaphore:
                await self.client.get_agreement(agreement_id, fields=["id"])
        except ConnectWiseNotFoundError as proof:
            return await self.remove_agreement(run, agreement_id, client_id, proof)
        return False

    async def remove_agreement(
        self,
        run: PollRun,
        agreement_id: int,
        client_id: str,
        proof: ConnectWiseNotFoundError,
        *,
        after_callback: bool = False,
    ) -> bool:
        """The one removal guard every path goes through: emit `psa.agreement.removed` only with
        ConnectWise's own NotFound as proof and within the removal budget (per run, per tenant).
        A removal over budget is held: not emitted, the agreement stays known (`removals_held` of
        the run's stats, reported as `sync.failed` at the end of the run). True when emitted."""
        if not proof.proves_absence:  # the client never raises NotFound without it: a second line
            raise proof
        stats = run.stats
        held = self.budget.take(self.now(), await self.known_count(), stats.agreements_removed)
        if held is not None:
            stats.removals_held[agreement_id] = held
            log.warning(
                "agreement removal held by the removal budget",
                extra={"tenant_id": self.context.tenant_id, "agreement_id": agreement_id, "reason": held},
            )
            return False
        evidence = evidence_404(f"/finance/agreements/{agreement_id}", after_callback=after_callback)
        event = build_agreement_removed(
            self.context, client_id, agreement_id, self.now(), evidence, correlationid=run.correlationid
        )
        await run.emitter.removed(event, forget_agreement=agreement_id)
        stats.agreements_removed += 1
        stats.clients.add(client_id)
        return True

    async def confirm_addition_removed(
        self, run: PollRun, agreement_id: int, addition_id: int, client_id: str
    ) -> None:
        """GET the addition: ConnectWise's NotFound emits `psa.addition.removed`; other errors propagate."""
        path = f"/finance/agreements/{agreement_id}/additions/{addition_id}"
        try:
            async with self.semaphore:
                await self.client.get_addition(agreement_id, addition_id, fields=["id"])
        except ConnectWiseNotFoundError:
            event = build_addition_removed(
                self.context, client_id, agreement_id, addition_id, self.now(), evidence_404(path),
                correlationid=run.correlationid,
            )  # fmt: skip
            await run.emitter.removed(event)
            run.stats.additions_removed += 1
