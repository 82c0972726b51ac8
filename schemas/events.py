"""Sync events on `sync.events.v1`, for dashboards and UIs (docs/design.md#sync-events).

Tenant-wide events (poll runs, heartbeats) use `client_id = "*"`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.envelope import CloudEvent, Payload, UtcDatetime

Count = int

RejectionReason = Literal[
    "auto_sync_enabled",
    "not_in_catalog",
    "malformed",
    "unknown_type",
    "unknown_tenant",
    "unknown_client",
    "unknown_contract",
    "cross_tenant",
    "psa_owned_field",
    "unknown_field",
    "invalid_value",
]


class PollCompletedData(Payload):
    run_kind: Literal["incremental", "refresh", "reconcile", "callback"]
    clients_touched: list[str] = Field(default_factory=list)
    agreements_seen: Count
    agreements_changed: Count
    agreements_removed: Count
    additions_removed: Count = 0
    api_requests: Count
    throttled_requests: Count
    retries: Count = 0
    duration_ms: Count
    started_at: UtcDatetime


class CatalogChangedData(Payload):
    new: Count
    updated: Count
    synced: Count
    removed: Count


class ContractsAppliedData(Payload):
    created: Count
    updated: Count
    unchanged: Count
    retired: Count = 0
    last_synced_at: UtcDatetime


class AutoSyncChangedData(Payload):
    enabled: bool
    requested_by: str


class CommandRejectedData(Payload):
    command_id: str
    command_type: str
    reason: RejectionReason
    message: str = Field(max_length=2000)
    agreement_ids: list[int] = Field(default_factory=list)
    addition_ids: list[int] = Field(default_factory=list)
    error_paths: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="reason `malformed`: the dotted paths of the fields that failed validation "
        "(`data.client_id`, `id`, `<root>` for the whole message)",
    )


class EditRejectedData(Payload):
    command_id: str
    contract_id: str
    fields: list[str]
    reason: RejectionReason
    message: str = Field(max_length=2000)


class EditAppliedData(Payload):
    """A local edit was applied to the contract (its outcome; a refused edit gives `EditRejected`)."""

    command_id: str
    contract_id: str
    fields: list[str] = Field(description="The fields the edit changed")


class SyncFailedData(Payload):
    stage: str = Field(description="e.g. poller.reconcile, mapper.command, writer.apply")
    error_code: str
    message: str = Field(max_length=2000)
    retryable: bool
    operator_action: str = Field(default="", max_length=2000, description="What the operator should do")


class HeartbeatData(Payload):
    service: Literal["poller", "mapper", "writer"]
    instance: str
    status: Literal["ok", "paused", "degraded"] = "ok"
    detail: str = ""


class PollCompleted(CloudEvent):
    type: Literal["sync.poll.completed"] = "sync.poll.completed"
    data: PollCompletedData


class CatalogChanged(CloudEvent):
    type: Literal["sync.catalog.changed"] = "sync.catalog.changed"
    data: CatalogChangedData


class ContractsApplied(CloudEvent):
    type: Literal["sync.contracts.applied"] = "sync.contracts.applied"
    data: ContractsAppliedData


class AutoSyncChanged(CloudEvent):
    type: Literal["sync.auto_sync.changed"] = "sync.auto_sync.changed"
    data: AutoSyncChangedData


class CommandRejected(CloudEvent):
    type: Literal["sync.command.rejected"] = "sync.command.rejected"
    data: CommandRejectedData


class EditRejected(CloudEvent):
    type: Literal["sync.edit.rejected"] = "sync.edit.rejected"
    data: EditRejectedData


class EditApplied(CloudEvent):
    type: Literal["sync.edit.applied"] = "sync.edit.applied"
    data: EditAppliedData


class SyncFailed(CloudEvent):
    type: Literal["sync.failed"] = "sync.failed"
    data: SyncFailedData


class Heartbeat(CloudEvent):
    type: Literal["sync.heartbeat"] = "sync.heartbeat"
    data: HeartbeatData
