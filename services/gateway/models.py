"""Request and response bodies of the Sync API (they make the OpenAPI document, docs/openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from schemas.commands import PsaId

CatalogState = Literal["new", "updated", "synced", "removed"]
CommandStatus = Literal["pending", "applied", "rejected", "failed"]
MAX_IDS = 10_000
"""Ids per select request: the wire contract's limit (`schemas.commands.SelectData`)."""


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyncRequest(Request):
    agreement_ids: list[PsaId] = Field(default_factory=list, max_length=MAX_IDS)
    addition_ids: list[PsaId] = Field(default_factory=list, max_length=MAX_IDS)


class AutoSyncRequest(Request):
    enabled: bool


class EditRequest(Request):
    changes: dict[str, JsonValue] = Field(min_length=1, max_length=50)


class CommandAccepted(BaseModel):
    command_id: UUID = Field(description="Every resulting sync event carries it as `correlationid`")
    status_url: str


class CatalogCounts(BaseModel):
    new: int = 0
    updated: int = 0
    synced: int = 0
    removed: int = 0


class ClientSummary(BaseModel):
    client_id: str
    catalog: CatalogCounts
    contracts: int
    auto_sync: bool
    last_synced_at: datetime | None
    last_status: str | None
    last_error: str | None


class ClientList(BaseModel):
    clients: list[ClientSummary]


class FieldChange(BaseModel):
    field: str = Field(description="Contract field a sync would change")
    contract_value: JsonValue = Field(description="The contract's current PSA value")
    psa_value: JsonValue = Field(description="The PSA's current value")


class CatalogAddition(BaseModel):
    addition_id: int
    contract_key: str
    state: CatalogState
    name: str
    psa_last_updated: datetime
    removed_at: datetime | None
    summary: dict[str, Any]
    changes: list[FieldChange] | None = Field(
        default=None, description="For `updated` items: what a sync would change"
    )


class CatalogAgreement(BaseModel):
    agreement_id: int
    contract_key: str | None
    state: CatalogState | None = Field(description="None when only additions of the agreement were observed")
    name: str | None
    psa_last_updated: datetime | None
    removed_at: datetime | None
    summary: dict[str, Any]
    changes: list[FieldChange] | None = None
    additions: list[CatalogAddition]


class Catalog(BaseModel):
    client_id: str
    auto_sync: bool
    last_synced_at: datetime | None
    states: list[CatalogState] = Field(description="The states listed (filter `state`)")
    counts: CatalogCounts = Field(description="Every item of the client, unfiltered")
    agreements: list[CatalogAgreement]


class SeededField(BaseModel):
    value: JsonValue
    psa_value: JsonValue
    overridden: bool


class Money(BaseModel):
    amount: str | None
    currency: str | None


class PsaOwned(BaseModel):
    locked: bool = Field(description="True while PSA-synced: edits of these fields are refused")
    status: str | None
    billing_cost: Money
    billing_cycle: str | None


class Contract(BaseModel):
    contract_key: str
    client_id: str
    kind: str | None
    parent_contract_key: str | None
    psa_synced: bool
    removed_in_psa_at: datetime | None
    psa_last_updated: datetime | None
    category: str | None
    psa_owned: PsaOwned
    psa_seeded: dict[str, SeededField]
    local: dict[str, JsonValue]
    explanation: dict[str, str] = Field(description="Per field, the mapping rule and inputs that produced it")
    ownership: dict[str, Literal["psa_owned", "psa_seeded", "local"]]
    updated_at: datetime | None


class ContractList(BaseModel):
    client_id: str
    contracts: list[Contract]


class CommandOutcome(BaseModel):
    event_id: UUID
    type: str
    time: datetime
    data: dict[str, Any]


class CommandState(BaseModel):
    command_id: UUID
    command_type: str
    client_id: str
    contract_key: str | None
    requested_by: str
    status: CommandStatus
    reason: str | None = Field(
        description="Rejection reason code (`sync.command.rejected` / `sync.edit.rejected`)"
    )
    message: str | None
    counts: dict[str, int] = Field(description="Summed counts of the outcome events (created, updated, ...)")
    created_at: datetime
    events: list[CommandOutcome]
