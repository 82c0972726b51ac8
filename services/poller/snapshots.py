"""Reads snapshots (an agreement with all its additions) and emits those whose digest changed
(`SnapshotReader`); an agreement or addition found missing goes to the removal checks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from pydantic import ValidationError

from services.poller.changes import (
    KnownAgreement,
    TenantContext,
    addition_ids_of,
    additions_digest,
    build_observed,
    company_id_of,
    is_changed,
    removed_addition_ids,
    snapshot_digest,
)
from services.poller.connectwise import ConnectWiseClient, ConnectWiseNotFoundError
from services.poller.connectwise import conditions as cond
from services.poller.removals import RemovalChecks
from services.poller.run import Json, PollRun
from services.poller.tenants import TenantConfig

log = logging.getLogger(__name__)

PAGE_SIZE = 1000


class SnapshotReader:
    """The per-agreement steps of every run. ConnectWise reads take the tenant's `semaphore`
    (its `concurrency`); a snapshot is emitted through the run's emitter only when its digest
    differs from the known one (`changes.is_changed`)."""

    def __init__(
        self,
        tenant: TenantConfig,
        context: TenantContext,
        client: ConnectWiseClient,
        semaphore: asyncio.Semaphore,
        removals: RemovalChecks,
        now: Callable[[], datetime],
    ) -> None:
        self.tenant = tenant
        self.context = context
        self.client = client
        self.semaphore = semaphore
        self.removals = removals
        self.now = now

    async def agreement_rows(
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

    async def read_additions(self, agreement_id: int) -> list[Json] | None:
        """All additions of one agreement; None when the agreement itself is gone (404)."""
        async with self.semaphore:
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

    async def read_and_observe(self, run: PollRun, agreement: Json, known: KnownAgreement | None) -> None:
        """Read the additions of a listed agreement and observe the snapshot; an agreement gone
        meanwhile is checked for removal."""
        agreement_id = int(agreement["id"])
        additions = await self.read_additions(agreement_id)
        if additions is None:
            if known is not None and known.client_id is not None:
                await self.removals.confirm_agreement_removed(run, agreement_id, known.client_id)
            return
        await self.observe(run, agreement, additions, known)

    async def sweep_one(self, run: PollRun, agreement_id: int, known: KnownAgreement) -> None:
        """The additions sweep of one known agreement: its additions are read; only when they
        changed is the agreement read too and the snapshot observed."""
        run.stats.swept += 1
        additions = await self.read_additions(agreement_id)
        if additions is None:
            if known.client_id is not None:
                await self.removals.confirm_agreement_removed(run, agreement_id, known.client_id)
            return
        if known.digest is not None and additions_digest(additions) == known.digest.additions:
            return
        try:
            async with self.semaphore:
                agreement = (await self.client.get_agreement(agreement_id)).raw
        except ConnectWiseNotFoundError as proof:
            if known.client_id is not None:
                await self.removals.remove_agreement(run, agreement_id, known.client_id, proof)
            return
        await self.observe(run, agreement, additions, known)

    async def observe(
        self, run: PollRun, agreement: Json, additions: list[Json], known: KnownAgreement | None
    ) -> None:
        """Emit `psa.agreement.observed` when the snapshot changed (and check the additions that
        disappeared from it); data the wire contract cannot carry is counted and skipped."""
        stats = run.stats
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
                self.context, client_id, agreement, additions, observed_at, correlationid=run.correlationid
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
        await run.emitter.observed(
            event,
            KnownAgreement(agreement_id, client_id, digest, event.data.psa_last_updated, current_ids),
        )
        stats.changed += 1
        stats.clients.add(client_id)
        for addition_id in removed_addition_ids(known.addition_ids if known else None, current_ids):
            await self.removals.confirm_addition_removed(run, agreement_id, addition_id, client_id)
