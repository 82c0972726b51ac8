"""Commands on `sync.commands.v1`, published by UIs and the CLI (docs/design.md#commands).

Every command's envelope `id` is its command id: the events it causes carry it as
`correlationid`, and rejections name it.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, JsonValue, model_validator

from schemas.envelope import CloudEvent, Payload

PsaId = Annotated[int, Field(ge=1, le=2_147_483_647)]
RequestedBy = Annotated[str, Field(min_length=1, max_length=200, description="User or system that asked")]


class SelectData(Payload):
    """Import or update these agreements and additions now. Rejected while auto-sync is on."""

    agreement_ids: list[PsaId] = Field(default_factory=list, max_length=10_000)
    addition_ids: list[PsaId] = Field(default_factory=list, max_length=10_000)
    requested_by: RequestedBy

    @model_validator(mode="after")
    def _selects_something(self) -> Self:
        if not self.agreement_ids and not self.addition_ids:
            raise ValueError("select names no agreement_ids and no addition_ids")
        return self


class SetAutoSyncData(Payload):
    enabled: bool
    requested_by: RequestedBy


class RefreshData(Payload):
    """Re-read this client from ConnectWise now (the UI sends it when the dialog opens).

    With `agreement_id` it is a callback hint forwarded between poller replicas: re-read that one
    agreement (client `*`: the receiving replica does not know it), `deleted` when ConnectWise said so."""

    requested_by: RequestedBy
    agreement_id: int | None = Field(default=None, ge=1, le=2_147_483_647)
    deleted: bool = False


class EditData(Payload):
    """A local edit of one contract. Edits of PSA-owned fields of a PSA-synced contract are rejected whole."""

    contract_id: str = Field(min_length=1, max_length=200, description="The contract's `contract_key`")
    changes: dict[str, JsonValue] = Field(min_length=1, max_length=50)
    requested_by: RequestedBy


class SelectCommand(CloudEvent):
    type: Literal["sync.command.select"] = "sync.command.select"
    data: SelectData


class SetAutoSyncCommand(CloudEvent):
    type: Literal["sync.command.set_auto_sync"] = "sync.command.set_auto_sync"
    data: SetAutoSyncData


class RefreshCommand(CloudEvent):
    type: Literal["sync.command.refresh"] = "sync.command.refresh"
    data: RefreshData


class EditCommand(CloudEvent):
    type: Literal["contract.command.edit"] = "contract.command.edit"
    data: EditData
