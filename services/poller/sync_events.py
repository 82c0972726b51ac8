"""One tenant's `sync.*` events from the poller: run completed, sync failed, heartbeat (`SyncEvents`)."""

from __future__ import annotations

import logging

from schemas.envelope import ALL_CLIENTS, CloudEvent
from schemas.events import (
    Heartbeat,
    HeartbeatData,
    PollCompleted,
    PollCompletedData,
    SyncFailed,
    SyncFailedData,
)
from services.common.metrics import EVENTS_PRODUCED
from services.poller.changes import SOURCE
from services.poller.emitter import Emitter
from services.poller.failures import Failure, Status
from services.poller.publisher import Publisher
from services.poller.run import RunStats

log = logging.getLogger(__name__)


def poll_completed_data(tenant_id: str, stats: RunStats) -> PollCompletedData:
    """`sync.poll.completed` of a finished run (pure)."""
    return PollCompletedData(
        tenant_id=tenant_id,
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


class SyncEvents:
    """Publishes a tenant's `sync.*` events to `topic`, each awaited until Kafka acknowledged it
    (or, for a run's own `sync.failed`, through the run's emitter)."""

    def __init__(self, tenant_id: str, publisher: Publisher, topic: str, instance: str) -> None:
        self.tenant_id = tenant_id
        self.publisher = publisher
        self.topic = topic
        self.instance = instance

    async def publish(
        self, data: PollCompletedData | SyncFailedData | HeartbeatData, correlationid: str | None = None
    ) -> None:
        event: CloudEvent
        if isinstance(data, PollCompletedData):
            event = PollCompleted.build(data, source=SOURCE, correlationid=correlationid)
        elif isinstance(data, SyncFailedData):
            event = SyncFailed.build(data, source=SOURCE, correlationid=correlationid)
        else:
            event = Heartbeat.build(data, source=SOURCE, correlationid=correlationid)
        await (await self.publisher.send(self.topic, event))
        EVENTS_PRODUCED.labels("poller", self.topic, event.type).inc()

    async def completed(self, stats: RunStats, correlationid: str | None) -> None:
        await self.publish(poll_completed_data(self.tenant_id, stats), correlationid)

    async def failed(
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
        """`sync.failed` (message and action cut to 2,000 characters); through `emitter` when given."""
        data = SyncFailedData(
            tenant_id=self.tenant_id,
            client_id=ALL_CLIENTS,
            stage=stage,
            error_code=error_code,
            message=message[:2000],
            retryable=retryable,
            operator_action=operator_action[:2000],
        )
        log.warning(
            "sync failed", extra={"tenant_id": self.tenant_id, "stage": stage, "error_code": error_code}
        )
        if emitter is not None:
            await emitter.sync_event(SyncFailed.build(data, source=SOURCE, correlationid=correlationid))
        else:
            await self.publish(data, correlationid)

    async def run_findings(self, stats: RunStats, correlationid: str | None) -> None:
        """`sync.failed` for what a finished run found but did not do: removals the budget held
        back (retryable) and agreements skipped as data the wire contract cannot carry."""
        if stats.removals_held:
            held = sorted(stats.removals_held)
            await self.failed(
                f"poller.{stats.kind}",
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
            await self.failed(
                f"poller.{stats.kind}",
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

    async def failed_quietly(self, stage: str, failure: Failure, correlationid: str | None) -> None:
        """`failed`, logging instead of raising when it cannot be published."""
        try:
            await self.failed(
                stage,
                failure.error_code,
                failure.message,
                retryable=failure.retryable,
                operator_action=failure.operator_action,
                correlationid=correlationid,
            )
        except Exception:
            log.exception(
                "could not publish sync.failed", extra={"tenant_id": self.tenant_id, "stage": stage}
            )

    async def heartbeat(self, status: Status, detail: str) -> None:
        await self.publish(
            HeartbeatData(
                tenant_id=self.tenant_id,
                client_id=ALL_CLIENTS,
                service="poller",
                instance=self.instance,
                status=status,
                detail=detail[:500],
            )
        )
