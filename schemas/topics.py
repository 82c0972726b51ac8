"""The topic registry, the key function and one discriminated union per topic (docs/design.md#keys-and-partitioning, docs/design.md#topics).

Parse any message of a topic with `parse(topic, raw_bytes)`; it raises
`pydantic.ValidationError` (or `ValueError` for an unknown topic) and never returns a
partially valid message. Every message about a client is keyed by `{tenant_id}:{client_id}`
so per-client order holds on every topic and all topics are co-partitioned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from schemas.commands import EditCommand, RefreshCommand, SelectCommand, SetAutoSyncCommand
from schemas.envelope import CloudEvent, subject_of
from schemas.events import (
    AutoSyncChanged,
    CatalogChanged,
    CommandRejected,
    ContractsApplied,
    EditApplied,
    EditRejected,
    Heartbeat,
    PollCompleted,
    SyncFailed,
)
from schemas.psa import AdditionRemoved, AgreementObserved, AgreementRemoved
from schemas.records import ContractRecordMapped, ContractRecordRestored, ContractRecordRetired

PSA_AGREEMENTS = "psa.agreements.v1"
SYNC_COMMANDS = "sync.commands.v1"
CONTRACT_RECORDS = "contracts.records.v1"
SYNC_EVENTS = "sync.events.v1"
DEADLETTER = "sync.deadletter.v1"

DEFAULT_PARTITIONS = 6
_DAY_MS = 24 * 3600 * 1000

PsaEvent = Annotated[AgreementObserved | AgreementRemoved | AdditionRemoved, Field(discriminator="type")]
Command = Annotated[
    SelectCommand | SetAutoSyncCommand | RefreshCommand | EditCommand, Field(discriminator="type")
]
ContractRecord = Annotated[
    ContractRecordMapped | ContractRecordRetired | ContractRecordRestored, Field(discriminator="type")
]
SyncEvent = Annotated[
    PollCompleted
    | CatalogChanged
    | ContractsApplied
    | AutoSyncChanged
    | CommandRejected
    | EditRejected
    | EditApplied
    | SyncFailed
    | Heartbeat,
    Field(discriminator="type"),
]

PSA_EVENT_ADAPTER: TypeAdapter[PsaEvent] = TypeAdapter(PsaEvent)
COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)
CONTRACT_RECORD_ADAPTER: TypeAdapter[ContractRecord] = TypeAdapter(ContractRecord)
SYNC_EVENT_ADAPTER: TypeAdapter[SyncEvent] = TypeAdapter(SyncEvent)


@dataclass(frozen=True)
class TopicSpec:
    """A topic's name, settings and the message types it carries."""

    name: str
    description: str
    message_types: tuple[type[CloudEvent], ...]
    partitions: int = DEFAULT_PARTITIONS
    replication_factor: int = 1
    config: dict[str, str] = field(default_factory=dict)
    adapter: TypeAdapter[Any] | None = None
    producers: tuple[str, ...] = ()
    """The services that write the topic (their Kafka principals get WRITE: `services.common.kafka_acls`)."""
    consumers: tuple[str, ...] = ()
    """The services that read it (READ on the topic and on their consumer groups)."""


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        PSA_AGREEMENTS,
        "Agreements and additions observed in the PSA (poller -> mapper, writer)",
        (AgreementObserved, AgreementRemoved, AdditionRemoved),
        config={"cleanup.policy": "delete", "retention.ms": str(7 * _DAY_MS), "max.message.bytes": "4194304"},
        adapter=PSA_EVENT_ADAPTER,
        producers=("poller",),
        consumers=("mapper", "writer"),
    ),
    TopicSpec(
        SYNC_COMMANDS,
        "Commands from UIs and the CLI (-> poller, mapper, writer)",
        (SelectCommand, SetAutoSyncCommand, RefreshCommand, EditCommand),
        config={"cleanup.policy": "delete", "retention.ms": str(7 * _DAY_MS)},
        adapter=COMMAND_ADAPTER,
        producers=("gateway",),
        consumers=("poller", "mapper", "writer"),
    ),
    TopicSpec(
        CONTRACT_RECORDS,
        "Contract records mapped from PSA items (mapper -> writer)",
        (ContractRecordMapped, ContractRecordRetired, ContractRecordRestored),
        config={"cleanup.policy": "delete", "retention.ms": str(7 * _DAY_MS)},
        adapter=CONTRACT_RECORD_ADAPTER,
        producers=("mapper",),
        consumers=("writer",),
    ),
    TopicSpec(
        SYNC_EVENTS,
        "Sync events for dashboards and UIs (all services)",
        (
            PollCompleted,
            CatalogChanged,
            ContractsApplied,
            AutoSyncChanged,
            CommandRejected,
            EditRejected,
            EditApplied,
            SyncFailed,
            Heartbeat,
        ),
        config={"cleanup.policy": "delete", "retention.ms": str(3 * _DAY_MS)},
        adapter=SYNC_EVENT_ADAPTER,
        producers=("poller", "mapper", "writer"),
        consumers=("gateway", "dashboard"),
    ),
    TopicSpec(
        DEADLETTER,
        "Messages no service could process: the original bytes, with headers naming the error",
        (),
        config={
            "cleanup.policy": "delete",
            "retention.ms": str(30 * _DAY_MS),
            "max.message.bytes": "8388608",
        },
        producers=("mapper", "writer"),
        consumers=(),
    ),
)
TOPICS_BY_NAME: dict[str, TopicSpec] = {t.name: t for t in TOPICS}


def message_key(tenant_id: str, client_id: str) -> bytes:
    """The Kafka key of every message about a client: UTF-8 `{tenant_id}:{client_id}`."""
    return subject_of(tenant_id, client_id).encode()


def parse(topic: str, raw: bytes | str) -> CloudEvent:
    """Validate one message value of `topic`; raises `pydantic.ValidationError` on bad input."""
    spec = TOPICS_BY_NAME.get(topic)
    if spec is None or spec.adapter is None:
        raise ValueError(f"topic {topic!r} carries no typed messages")
    message: CloudEvent = spec.adapter.validate_json(raw)
    return message


# Dead-letter headers: the value is the original bytes, unchanged.
DLQ_REASON = "cs-dlq-reason"  # short machine code, one of DLQ_REASONS
DLQ_ERROR = "cs-dlq-error"  # human-readable error (never contains credentials)
DLQ_STAGE = "cs-dlq-stage"  # service.stage, e.g. writer.apply
DLQ_SOURCE_TOPIC = "cs-dlq-source-topic"
DLQ_SOURCE_PARTITION = "cs-dlq-source-partition"
DLQ_SOURCE_OFFSET = "cs-dlq-source-offset"
_MAPPING_CODES: dict[str, str] = {
    "addition_agreement_mismatch": "an addition's agreementId is not the snapshot's agreement",
    "addition_not_in_snapshot": "a selected or linked addition id is not in the agreement's snapshot",
    "amount_out_of_range": "an amount cannot be represented, or its absolute value is 10^15 or more",
    "invalid_currency": "the currency code (the agreement's, else the tenant default) is not three letters",
    "invalid_id": "an agreement, parent agreement or addition id is outside 1..2147483647",
    "invalid_record": "the mapped record failed validation (a bug)",
    "invalid_time_zone": "the tenant's time_zone is not an IANA zone",
    "missing_bill_customer": "an addition has no billCustomer",
    "missing_billing_cycle": "the agreement has no billingCycle and billOneTimeFlag is not true",
    "unknown_billing_cycle": "billingCycle is none of Weekly, BiWeekly, Monthly, BiMonthly, Quarterly, "
    "SemiAnnual, Yearly, NotRecurring",
    "unsupported_currency_decimals": "the currency's numberOfDecimals is outside 0..6",
}
DLQ_REASONS: dict[str, str] = {
    "malformed_json": "the value is not UTF-8 JSON, or there is no value (tombstone)",
    "unknown_type": "the CloudEvents `type` is none this topic carries",
    "validation_error": "JSON, but not a valid message of the topic: a missing envelope attribute "
    "(`specversion`, `id`, `source`, `type`, `time`, `subject`, `tenantid`, `data`) or an invalid field",
    "key_mismatch": "the Kafka key is missing (null) or not the message's `{tenant_id}:{client_id}` subject",
    "unknown_tenant": "the tenant is not in the tenants file (the registry)",
    "cross_tenant": "an edit names a contract of another tenant",
    "unknown_contract": "an edit names a contract that does not exist",
    "db_rejected": "PostgreSQL refused the event's data (SQLSTATE class 22 or 23, or the ownership guard's CS403)",
    "internal_error": "a service failed unexpectedly on this message (a bug), twice for the writer; the error "
    "and error-class headers have the cause",
    "too_deeply_nested": "a JSON value nested deeper than a parser's recursion limit",
    "too_large": "Kafka refused what the message produces for its size (a record or state entry over a topic's "
    "`max.message.bytes`): the message is set aside instead of blocking its partition",
    **{f"mapping.{code}": f"a PSA item could not be mapped: {text}" for code, text in _MAPPING_CODES.items()},
}
"""The `cs-dlq-reason` vocabulary: every reason a service dead-letters with, and what it means."""
DLQ_ERROR_CLASS = "cs-dlq-error-class"  # the exception's class name, e.g. ValidationError, RecursionError
DLQ_HEADERS = (
    DLQ_REASON,
    DLQ_ERROR,
    DLQ_STAGE,
    DLQ_SOURCE_TOPIC,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_OFFSET,
    DLQ_ERROR_CLASS,
)
