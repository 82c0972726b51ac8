"""From Kafka messages to a batch plan, and from a batch result to sync events (pure).

`plan_batch` sorts one polled batch: messages that parse go into the plan in offset order,
unreadable contract records become dead letters with a reason; commands the writer does not
handle are ignored (other services own them). `events_for` turns what `store.py` applied into
the events dashboards read, `outbox_messages` turns those and the dead letters into the Kafka
messages the batch owes (written to the outbox in the batch's transaction). No function does I/O.

Dead-letter ownership: each bad message is dead-lettered by ONE service, the first consumer that
owns its topic's validation. `psa.agreements.v1` and `sync.commands.v1` are validated by the mapper
(it dead-letters malformed input and answers it with `sync.command.rejected` / `sync.failed`), so
the writer only counts and skips what it cannot parse there (`skipped_unparseable`). The writer
owns the dead letters of `contracts.records.v1` and of events it refuses after parsing (a
cross-tenant contract key, an edit of an unknown or foreign contract, data PostgreSQL refuses).

Unknown tenants (docs/design.md#ground-rules): given the configured tenant ids (`WRITER_TENANTS_FILE`, read by
`services.common.tenants`), the writer applies nothing for any other tenant: a contract record is
dead-lettered (`unknown_tenant`, answered with `sync.failed`); a command or PSA event is skipped,
because the mapper dead-letters and rejects it (one dead letter per bad message, not two).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID, uuid4, uuid5

from pydantic import ValidationError

from schemas.commands import EditCommand, SetAutoSyncCommand
from schemas.envelope import CloudEvent
from schemas.events import (
    CatalogChanged,
    CatalogChangedData,
    ContractsApplied,
    ContractsAppliedData,
    EditApplied,
    EditAppliedData,
    EditRejected,
    EditRejectedData,
    SyncFailed,
    SyncFailedData,
)
from schemas.fast import ObservedEvent, decode_mapped, decode_observed
from schemas.psa import AdditionRemoved, AgreementObserved, AgreementRemoved
from schemas.records import ContractRecordMapped, ContractRecordRestored, ContractRecordRetired
from schemas.topics import CONTRACT_RECORDS, PSA_AGREEMENTS, SYNC_COMMANDS, parse
from services.common.kafka import (
    CONTENT_TYPE_HEADER,
    classify_parse_error,
    deadletter_headers,
    describe_error,
    recover_client,
)
from services.common.poison import MessageFailure, guarded
from services.writer.apply import (
    EditDecision,
    StagedRecord,
    key_matches_tenant,
    staged_from_event,
    staged_from_record,
)

log = logging.getLogger(__name__)

SOURCE = "contract-sync/writer"
STAGE = "writer.apply"

ClientKey = tuple[str, str]


class Incoming(NamedTuple):
    """One consumed Kafka message (its position and original bytes). A NamedTuple: one is built
    per consumed message, and that is 5x cheaper than a frozen dataclass."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class DeadLetter:
    message: Incoming
    reason: str
    error: str
    client: ClientKey | None
    event_id: str | None = None
    error_class: str | None = None
    """The exception's class name (`cs-dlq-error-class`), when an exception caused it."""


class Applicable(NamedTuple):
    """A parsed event the writer applies, with where it came from. Mapped contract records are
    carried as `StagedRecord` (validated, reduced to their stage row), every other type as its
    pydantic model."""

    event: CloudEvent | ObservedEvent | StagedRecord
    message: Incoming


def client_of(event: CloudEvent | ObservedEvent | StagedRecord) -> ClientKey:
    """The (tenant, client) an applicable event is about."""
    if isinstance(event, StagedRecord):
        return (event.tenant_id, event.client_id)
    data: Any = event.data
    return (data.tenant_id, data.client_id)


@dataclass
class BatchPlan:
    """What one batch asks for, in offset order per topic. `events` are candidates: the store
    skips those whose ids were already processed."""

    events: list[Applicable] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    ignored: int = 0
    skipped_unparseable: int = 0
    """Messages of topics whose dead letters the mapper owns, refused and not dead-lettered here
    (unreadable, keyed as another client, of an unknown tenant)."""
    outbox_done: list[UUID] = field(default_factory=list)
    """Outbox rows already acknowledged by Kafka: deleted in this batch's transaction."""

    def __len__(self) -> int:
        return len(self.events)


DEADLETTERED_HERE: frozenset[str] = frozenset({CONTRACT_RECORDS})
"""Registry topics whose unreadable messages the writer dead-letters; the mapper owns the others."""

HANDLED_TYPES: dict[str, tuple[type[CloudEvent | ObservedEvent], ...]] = {
    CONTRACT_RECORDS: (ContractRecordMapped, ContractRecordRetired, ContractRecordRestored),
    PSA_AGREEMENTS: (ObservedEvent, AgreementObserved, AgreementRemoved, AdditionRemoved),
    SYNC_COMMANDS: (EditCommand, SetAutoSyncCommand),
}


def parse_message(message: Incoming, topic_kind: str) -> CloudEvent | DeadLetter:
    """Parse one message as a message of `topic_kind` (a registry topic name)."""
    if message.value is None:
        return DeadLetter(message, "malformed_json", "message has no value (tombstone)", None)
    try:
        return parse(topic_kind, message.value)
    except (ValidationError, ValueError) as error:
        recovered = recover_client(message.value)
        client = (recovered[0], recovered[1]) if recovered else None
        event_id = recovered[2] if recovered else None
        return DeadLetter(
            message,
            classify_parse_error(error),
            describe_error(error),
            client,
            event_id,
            type(error).__name__,
        )


def plan_batch(
    messages: Sequence[Incoming],
    topic_kinds: dict[str, str] | None = None,
    *,
    seen: set[UUID] | None = None,
    tenants: frozenset[str] | None = None,
) -> BatchPlan:
    """Parse and sort a batch. `topic_kinds` maps the consumed topic names to registry names
    (identity by default; benchmarks and tests consume renamed copies of the topics). `tenants`:
    the configured tenant ids; a message of any other tenant is never applied (None: no check).

    Guarantees: every message ends up exactly once in `events`, `dead_letters`, `ignored` or
    `skipped_unparseable` (unreadable input of the mapper-owned topics, see the module docstring);
    within the batch (or across calls sharing `seen`) an event id seen twice is kept once (the first).
    """
    plan = BatchPlan()
    seen = set() if seen is None else seen  # shared across the slices of one batch
    kinds = topic_kinds or {}
    for message in messages:
        kind = kinds.get(message.topic, message.topic)
        failure = guarded(functools.partial(_plan_one, plan, message, kind, seen, tenants))
        if isinstance(failure, MessageFailure):
            # whatever went wrong with this one message (a bug, a value no parser survives): it is
            # dead-lettered here, whichever topic it came from, and the batch goes on
            log.error(
                "cannot plan a message",
                extra={
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                    "error_class": failure.error_class,
                },
            )
            plan.dead_letters.append(
                DeadLetter(message, failure.reason, failure.error, None, None, failure.error_class)
            )
    return plan


def _plan_one(
    plan: BatchPlan, message: Incoming, kind: str, seen: set[UUID], tenants: frozenset[str] | None
) -> None:
    """Sort one message into `plan` (the body of `plan_batch`'s loop)."""
    parsed: CloudEvent | ObservedEvent | StagedRecord | DeadLetter | None = None
    if kind == CONTRACT_RECORDS and message.value is not None:
        record = decode_mapped(message.value)  # the canonical bulk: no pydantic models
        parsed = None if record is None else staged_from_record(record)
    elif kind == PSA_AGREEMENTS and message.value is not None:
        parsed = decode_observed(message.value)  # canonical snapshots: no pydantic models
    if parsed is None:
        parsed = parse_message(message, kind)
        if isinstance(parsed, ContractRecordMapped):
            parsed = staged_from_event(parsed)
    if isinstance(parsed, DeadLetter):
        if kind in DEADLETTERED_HERE:
            plan.dead_letters.append(parsed)
        else:
            plan.skipped_unparseable += 1  # the mapper dead-letters it and tells the producer
            log.debug(
                "skipped an unreadable message (the mapper dead-letters it)",
                extra={
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                    "reason": parsed.reason,
                },
            )
        return
    subject_key = (
        f"{parsed.tenant_id}:{parsed.client_id}".encode() if isinstance(parsed, StagedRecord) else parsed.key
    )
    if message.key != subject_key:
        # Routed as another client than it names, or without a key (a null key would put the
        # client's messages on an arbitrary partition, out of its order): never applied
        # (docs/design.md#ground-rules, a command can only touch its own tenant's and client's data). The mapper dead-letters its own
        # topics' ones.
        if kind in DEADLETTERED_HERE:
            plan.dead_letters.append(_key_mismatch(message, subject_key, parsed))
        else:
            plan.skipped_unparseable += 1
        return
    if tenants is not None:
        tenant_id = parsed.tenant_id if isinstance(parsed, StagedRecord) else parsed.tenantid
        if tenant_id not in tenants:
            if kind in DEADLETTERED_HERE:
                plan.dead_letters.append(_unknown_tenant(message, subject_key, parsed))
            else:
                plan.skipped_unparseable += 1  # the mapper dead-letters and rejects it
            return
    if isinstance(parsed, StagedRecord):
        if not key_matches_tenant(parsed.contract_key, parsed.tenant_id):
            plan.dead_letters.append(
                _cross_tenant(message, parsed.contract_key, parsed.tenant_id, parsed.client_id, parsed.id)
            )
            return
    elif not isinstance(parsed, HANDLED_TYPES.get(kind, ())):
        plan.ignored += 1  # select/refresh commands belong to the poller and the mapper
        return
    elif isinstance(parsed, ContractRecordRetired | ContractRecordRestored) and not key_matches_tenant(
        parsed.data.contract_key, parsed.data.tenant_id
    ):
        data = parsed.data
        plan.dead_letters.append(
            _cross_tenant(message, data.contract_key, data.tenant_id, data.client_id, parsed.id)
        )
        return
    if parsed.id in seen:
        plan.ignored += 1
        return
    seen.add(parsed.id)
    plan.events.append(Applicable(parsed, message))


def _key_mismatch(
    message: Incoming, subject_key: bytes, parsed: CloudEvent | ObservedEvent | StagedRecord
) -> DeadLetter:
    tenant_id, client_id = subject_key.decode().split(":", 1)
    routed = "no Kafka key" if message.key is None else f"Kafka key {message.key[:200]!r}"
    return DeadLetter(
        message,
        "key_mismatch",
        f"{routed} does not match the subject {subject_key.decode()!r}",
        (tenant_id, client_id),
        str(parsed.id),
    )


def _unknown_tenant(
    message: Incoming, subject_key: bytes, parsed: CloudEvent | ObservedEvent | StagedRecord
) -> DeadLetter:
    tenant_id, client_id = subject_key.decode().split(":", 1)
    return DeadLetter(
        message,
        "unknown_tenant",
        f"tenant {tenant_id!r} is not configured (not in the tenants file)",
        (tenant_id, client_id),
        str(parsed.id),
    )


def _cross_tenant(message: Incoming, key: str, tenant_id: str, client_id: str, event_id: UUID) -> DeadLetter:
    return DeadLetter(
        message,
        "cross_tenant",
        f"contract_key {key} does not belong to tenant {tenant_id}",
        (tenant_id, client_id),
        str(event_id),
    )


# ---------------------------------------------------------------------------------------------
# Results -> events
# ---------------------------------------------------------------------------------------------


@dataclass
class AppliedCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    retired: int = 0

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged + self.retired


@dataclass(frozen=True)
class EditOutcome:
    command: EditCommand
    decision: EditDecision


@dataclass
class BatchResult:
    """What one committed batch did."""

    applied: dict[tuple[str, str, str | None], AppliedCounts] = field(default_factory=dict)
    """Per (tenant, client, correlation id): contract outcomes."""
    last_synced_at: dict[ClientKey, datetime] = field(default_factory=dict)
    catalog_changed: dict[ClientKey, dict[str, int]] = field(default_factory=dict)
    """Clients whose catalog state counts changed, with the new counts."""
    edits: list[EditOutcome] = field(default_factory=list)
    auto_sync: dict[ClientKey, bool] = field(default_factory=dict)
    duplicates: int = 0
    fresh: int = 0
    rejected_events: list[tuple[UUID, str, str]] = field(default_factory=list)
    """Events the database refused (event id, reason, error): they go to the dead-letter topic."""
    dead_letters: list[DeadLetter] = field(default_factory=list)
    """Every dead letter of the batch (when applied with an outbox)."""
    outbox: list[OutboxMessage] = field(default_factory=list)
    """The messages the batch wrote to the outbox in its transaction, in publication order."""

    @property
    def contracts_written(self) -> int:
        return sum(c.created + c.updated + c.retired for c in self.applied.values())


def counts_for(
    result: BatchResult, tenant_id: str, client_id: str, correlation_id: str | None
) -> AppliedCounts:
    key = (tenant_id, client_id, correlation_id)
    counts = result.applied.get(key)
    if counts is None:
        counts = result.applied[key] = AppliedCounts()
    return counts


def events_for(result: BatchResult, dead_letters: Sequence[DeadLetter]) -> list[CloudEvent]:
    """The sync events a committed batch causes, in a stable order."""
    out: list[CloudEvent] = []
    for (tenant_id, client_id, correlation), counts in sorted(
        result.applied.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or "")
    ):
        synced_at = result.last_synced_at.get((tenant_id, client_id))
        if synced_at is None:
            continue
        out.append(
            ContractsApplied.build(
                ContractsAppliedData(
                    tenant_id=tenant_id,
                    client_id=client_id,
                    created=counts.created,
                    updated=counts.updated,
                    unchanged=counts.unchanged,
                    retired=counts.retired,
                    last_synced_at=synced_at,
                ),
                source=SOURCE,
                correlationid=correlation,
            )
        )
    for (tenant_id, client_id), states in sorted(result.catalog_changed.items()):
        out.append(
            CatalogChanged.build(
                CatalogChangedData(
                    tenant_id=tenant_id,
                    client_id=client_id,
                    new=states.get("new", 0),
                    updated=states.get("updated", 0),
                    synced=states.get("synced", 0),
                    removed=states.get("removed", 0),
                ),
                source=SOURCE,
            )
        )
    for outcome in result.edits:
        decision = outcome.decision
        data = outcome.command.data
        if decision.accepted:
            out.append(
                EditApplied.build(
                    EditAppliedData(
                        tenant_id=data.tenant_id,
                        client_id=data.client_id,
                        command_id=str(outcome.command.id),
                        contract_id=data.contract_id,
                        fields=sorted(data.changes),
                    ),
                    source=SOURCE,
                    correlationid=outcome.command.id,
                )
            )
            continue
        if decision.reason is None:
            continue
        out.append(
            EditRejected.build(
                EditRejectedData(
                    tenant_id=data.tenant_id,
                    client_id=data.client_id,
                    command_id=str(outcome.command.id),
                    contract_id=data.contract_id,
                    fields=list(decision.fields),
                    reason=decision.reason,
                    message=decision.message,
                ),
                source=SOURCE,
                correlationid=outcome.command.id,
            )
        )
    for letter in dead_letters:
        if letter.client is None:
            continue  # no tenant to address: the dead-letter record itself is the report
        out.append(sync_failed_for(letter))
    return out


_FAILED_ID_NAMESPACE = UUID("5b0c7c52-8e1f-4a55-9d1e-2f7f6c1e0a11")


def sync_failed_for(letter: DeadLetter) -> SyncFailed:
    """The `sync.failed` event of a dead letter. Its id is derived from the message's position and
    the reason, so re-dead-lettering the same message after a replay repeats the same CloudEvent
    id (consumers de-duplicate on it)."""
    tenant_id, client_id = letter.client if letter.client else ("", "")
    where = letter.message
    event_id = uuid5(_FAILED_ID_NAMESPACE, f"{where.topic}:{where.partition}:{where.offset}:{letter.reason}")
    return SyncFailed.build(
        SyncFailedData(
            tenant_id=tenant_id,
            client_id=client_id,
            stage=STAGE,
            error_code=letter.reason,
            message=(
                f"{letter.message.topic}[{letter.message.partition}]@{letter.message.offset} was sent to the "
                f"dead-letter topic: {letter.error}"
            )[:2000],
            retryable=False,
            operator_action=(
                "inspect the record on sync.deadletter.v1 (headers name the source position); fix the "
                "producer, then re-publish a corrected message"
            ),
        ),
        source=SOURCE,
        correlationid=letter.event_id,
        id=event_id,
    )


def database_failed_event(tenant_id: str, client_id: str, error: str) -> SyncFailed:
    """The retryable `sync.failed` a client gets when PostgreSQL fails its records for reasons that
    are not their data (`error` names the SQLSTATE, never row data)."""
    return SyncFailed.build(
        SyncFailedData(
            tenant_id=tenant_id,
            client_id=client_id,
            stage=STAGE,
            error_code="database_unavailable",
            message=f"PostgreSQL does not apply this client's records now; retrying: {error}"[:2000],
            retryable=True,
            operator_action=(
                "check the writer's database (connection, the writer role's grants, read-only mode, disk); "
                "the records apply once it takes them again"
            ),
        ),
        source=SOURCE,
    )


def dead_letters_of(plan: BatchPlan, result: BatchResult) -> list[DeadLetter]:
    """The plan's dead letters plus the events the database refused or an edit named an
    unknown or foreign contract for (those are also answered with `sync.edit.rejected`)."""
    letters = list(plan.dead_letters)
    by_id: dict[UUID, Applicable] = {a.event.id: a for a in plan.events}
    for event_id, reason, error in result.rejected_events:
        applicable = by_id.get(event_id)
        if applicable is None:
            continue
        letters.append(
            DeadLetter(applicable.message, reason, error, client_of(applicable.event), str(event_id))
        )
    return letters


# ---------------------------------------------------------------------------------------------
# The outbox: what a batch owes Kafka
# ---------------------------------------------------------------------------------------------


class OutboxMessage(NamedTuple):
    """One Kafka message a committed batch owes (a row of `writer_outbox`). `id` names the row;
    a sync event's CloudEvent id is inside `value`."""

    id: UUID
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class OutboxTopics:
    """Where the writer's outgoing messages go (renamed in tests and benchmarks)."""

    events: str
    deadletter: str


def outbox_messages(
    letters: Sequence[DeadLetter], events: Sequence[CloudEvent], topics: OutboxTopics
) -> list[OutboxMessage]:
    """The batch's dead letters (original bytes, headers naming the reason and source position),
    then its sync events, in that order (pure)."""
    out: list[OutboxMessage] = []
    for letter in letters:
        message = letter.message
        headers = deadletter_headers(
            reason=letter.reason,
            error=letter.error,
            stage=STAGE,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            error_class=letter.error_class,
        )
        out.append(OutboxMessage(uuid4(), topics.deadletter, message.key, message.value, tuple(headers)))
    for event in events:
        out.append(OutboxMessage(uuid4(), topics.events, event.key, event.to_bytes(), (CONTENT_TYPE_HEADER,)))
    return out
