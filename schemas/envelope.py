"""The CloudEvents 1.0 envelope every message on every topic carries (docs/design.md#envelope).

Structured mode, `application/cloudevents+json`. Each concrete message type is a subclass of
`CloudEvent` that pins `type` to a literal and `data` to its payload model, so one
discriminated union per topic parses any message in one step.

Guarantees:
- `id` is a fresh UUID per event; consumers de-duplicate on it.
- `subject` is always `{tenant_id}:{client_id}` of the payload and `tenantid` its tenant;
  `CloudEvent.build` derives both from `data`, and validation refuses a mismatch, so a message
  can never claim one client in its envelope and touch another in its payload.
- Models are frozen; payload models forbid unknown fields (strict on produce), while the
  envelope ignores unknown extension attributes (CloudEvents allows them).
- On the wire a producer must send `specversion`, `id`, `source`, `type`, `time`, `subject`,
  `tenantid` and `data` (`REQUIRED_ATTRIBUTES`); validation refuses a message lacking any of them
  (consumers dead-letter it with reason `validation_error`). `time` is optional in CloudEvents but
  required here: consumers order auto-sync changes and edits by it, and a time filled in on receipt
  would make a replayed command look new. Only `datacontenttype` (JSON when absent, as the
  CloudEvents JSON format says) and `correlationid` may be omitted. `build` fills in a fresh `id`,
  the current `time` and `specversion` for producers written in Python.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self
from uuid import UUID, uuid4

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
CLIENT_ID_PATTERN = r"^(\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$"
ALL_CLIENTS = "*"
"""`client_id` of tenant-wide events (poll runs, heartbeats): subject and key `{tenant_id}:*`."""

_TENANT_RE = re.compile(TENANT_ID_PATTERN)
_CLIENT_RE = re.compile(CLIENT_ID_PATTERN)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
"""A timezone-aware timestamp, normalised to UTC."""

TenantId = Annotated[str, Field(pattern=TENANT_ID_PATTERN, description="Tenant (MSP) id: lower-case slug")]
ClientId = Annotated[
    str,
    Field(
        pattern=CLIENT_ID_PATTERN,
        description="Client id: the ConnectWise company id as a decimal string unless the tenant maps "
        "clients otherwise; `*` on tenant-wide events",
    ),
]


def subject_of(tenant_id: str, client_id: str) -> str:
    """`{tenant_id}:{client_id}`: the CloudEvents subject and the Kafka key of every message."""
    if not _TENANT_RE.match(tenant_id) or not _CLIENT_RE.match(client_id):
        raise ValueError(f"invalid tenant/client id: {tenant_id!r}:{client_id!r}")
    return f"{tenant_id}:{client_id}"


class WireModel(BaseModel):
    """Base of our own wire models: frozen, unknown fields refused (strict on produce)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Payload(WireModel):
    """Base of every `data` model: always names its tenant and client."""

    tenant_id: TenantId
    client_id: ClientId


REQUIRED_ATTRIBUTES: tuple[str, ...] = (
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "tenantid",
    "data",
)
"""What every message on the wire must carry (CloudEvents' required attributes plus `time`, `subject`
and the `tenantid` extension, which this contract requires too)."""


def _require_attributes(schema: dict[str, Any]) -> None:
    """List every `REQUIRED_ATTRIBUTES` as required in the exported JSON Schema: `type` has a default
    in Python (each message class pins it), yet a producer must send it."""
    others = [name for name in schema.get("required", []) if name not in REQUIRED_ATTRIBUTES]
    schema["required"] = [*REQUIRED_ATTRIBUTES, *others]


class CloudEvent(BaseModel):
    """CloudEvents 1.0 structured-mode envelope (docs/design.md#envelope)."""

    model_config = ConfigDict(frozen=True, extra="ignore", json_schema_extra=_require_attributes)

    content_type: ClassVar[str] = "application/cloudevents+json"

    specversion: Annotated[str, Field(pattern=r"^1\.0$", description="Always `1.0`")]
    id: UUID = Field(description="Unique per event; consumers de-duplicate on it")
    source: str = Field(
        min_length=1, max_length=200, description="Producing component, e.g. contract-sync/poller"
    )
    type: str
    time: UtcDatetime = Field(description="When the event happened (RFC 3339, with an offset)")
    subject: str = Field(description="`{tenant_id}:{client_id}`")
    datacontenttype: Annotated[str, Field(pattern=r"^application/json$")] = "application/json"
    tenantid: TenantId
    correlationid: str | None = Field(
        default=None, max_length=200, description="`id` of the command that caused this event, if any"
    )
    data: Payload

    @model_validator(mode="after")
    def _subject_matches_payload(self) -> Self:
        expected = subject_of(self.data.tenant_id, self.data.client_id)
        if self.subject != expected or self.tenantid != self.data.tenant_id:
            raise ValueError(
                f"envelope subject/tenantid ({self.subject!r}/{self.tenantid!r}) do not match the payload ({expected!r})"
            )
        return self

    @classmethod
    def build(cls, data: Any, *, source: str, correlationid: str | UUID | None = None, **extra: Any) -> Self:
        """Wrap `data` in a new envelope with a fresh id, the current time and derived subject/tenant."""
        return cls(
            specversion=extra.pop("specversion", "1.0"),
            id=extra.pop("id", None) or uuid4(),
            time=extra.pop("time", None) or utcnow(),
            source=source,
            subject=subject_of(data.tenant_id, data.client_id),
            tenantid=data.tenant_id,
            correlationid=str(correlationid) if correlationid is not None else None,
            data=data,
            **extra,
        )

    @property
    def key(self) -> bytes:
        """The Kafka message key: UTF-8 `{tenant_id}:{client_id}` (docs/design.md#keys-and-partitioning)."""
        return self.subject.encode()

    def to_bytes(self) -> bytes:
        """The Kafka message value: compact JSON."""
        return self.model_dump_json(exclude_none=True).encode()
