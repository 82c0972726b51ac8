"""The mapper's pure core: client state + one incoming message -> state changes + output messages.

Pure apart from the key-value store it is handed (a dict in tests, the worker's StateStore in the app):
no Kafka, no faust, no clock reads beyond CloudEvent timestamps. The faust agent is a thin loop
around `handle`.

State: per client, in the key-value store (`services.mapper.client_state`). The decisions per
message type live in `psa_events` and `commands`; this module parses, checks key and tenant,
dispatches, and dead-letters malformed input.

Behaviour (docs/design.md#what-a-user-sees, docs/design.md#wire-contract):
- observed: stores the snapshot unless it is older than the stored one (`psa_last_updated`
  guard; of two with the same version the one read later, `observed_at`, wins). With auto-sync on,
  maps every item of the snapshot not yet mapped with its current content: what was mapped is
  recorded as `{psa_last_updated}#{digest of the item's mapped inputs}` (`schemas.psa_digest`),
  so a second change within ConnectWise's one-second `lastUpdated` is mapped too.
  With auto-sync off nothing is emitted: the writer's catalog shows the change as "updated".
- select: rejected whole (`auto_sync_enabled`) while auto-sync is on. Otherwise maps each named
  agreement and addition (an addition alone still names its parent's key) with the command id
  as `correlationid`, and links them. Ids never observed (or removed) are rejected one event per
  id (`not_in_catalog`); the rest still applies.
- set_auto_sync: emits `sync.auto_sync.changed`; turning it on maps everything pending at once.
- removed (agreement or addition) of a linked item: `contract.record.retired`. A removed
  agreement also retires its linked additions (ConnectWise deletes them with it).
- Malformed input (bad JSON, unknown type, failed validation, Kafka key not matching the
  subject): dead-letter the original bytes plus `sync.command.rejected` (commands whose tenant can
  be read, reason `malformed` with the failed fields' `error_paths`; client `*` when none can be read)
  or `sync.failed` (PSA events whose tenant and client can be read). A mapping error of one item: dead-letter the snapshot plus
  `sync.failed`; the other items still map.
- Unknown tenant (a tenant registry is configured, `MAPPER_TENANTS_FILE`, and the message's tenant is
  not in it): every command (refresh and edit too) and every PSA event is dead-lettered with reason
  `unknown_tenant` (stage `mapper.tenant`) and answered with `sync.command.rejected`
  (`unknown_tenant`) or `sync.failed`; nothing is stored. The mapper is the one owner of these dead
  letters: the writer skips such commands and PSA events, the poller skips such refreshes.
- refresh and edit commands belong to the poller and the writer: ignored here.

Idempotence: handling the same message twice emits equivalent records again (new event ids);
the writer de-duplicates on content and `psa_last_updated`, so at-least-once is harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import ValidationError

from schemas.commands import SelectCommand, SetAutoSyncCommand
from schemas.envelope import ALL_CLIENTS, CloudEvent
from schemas.events import (
    CommandRejected,
    CommandRejectedData,
    RejectionReason,
    SyncFailed,
    SyncFailedData,
)
from schemas.fast import (
    ObservedEvent,
)
from schemas.psa import AdditionRemoved, AgreementObserved, AgreementRemoved
from schemas.topics import SYNC_COMMANDS, SYNC_EVENTS
from services.common.kafka import (
    classify_parse_error,
    deadletter_headers,
    describe_error,
    error_paths,
    recover_addressee,
)
from services.mapper.client_state import (
    ClientView,
    Store,
    indexed,
)
from services.mapper.commands import select, set_auto_sync
from services.mapper.messages import (
    SOURCE,
    STAGE_PARSE,
    STAGE_PRODUCE,
    STAGE_TENANT,
    DeadLetter,
    Emit,
    Incoming,
    Output,
    parse_input,
)
from services.mapper.psa_events import addition_removed, agreement_removed, observed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """What one message did: its type (`malformed` when unreadable) and the messages to produce."""

    message_type: str
    outputs: list[Output]


def handle(store: Store, message: Incoming, tenants: frozenset[str] | None = None) -> list[Output]:
    """Decide what one consumed message does; never raises for bad input (it is dead-lettered)."""
    return decide(store, message, tenants).outputs


def decide(store: Store, message: Incoming, tenants: frozenset[str] | None = None) -> Decision:
    """`handle`, also naming the consumed message's type (for metrics).

    `tenants`: the configured tenant ids (`services.common.tenants`); None turns the unknown-tenant
    check off. A message of a tenant outside it is dead-lettered and answered, nothing is stored."""
    try:
        event = parse_input(message.topic, message.value)
    except (ValidationError, ValueError) as error:
        return Decision(
            "malformed",
            _malformed(message, classify_parse_error(error), describe_error(error), paths=error_paths(error)),
        )
    if message.key != event.key:
        # a null key too: the client's messages would land on an arbitrary partition, out of order
        routed = "no Kafka key" if message.key is None else f"Kafka key {message.key[:200]!r}"
        error_text = f"{routed} does not match the subject {event.subject!r}"
        return Decision("malformed", _malformed(message, "key_mismatch", error_text, event=event))
    if tenants is not None and event.tenantid not in tenants:
        error_text = f"tenant {event.tenantid!r} is not configured (not in the tenants file)"
        return Decision(
            "unknown_tenant",
            _malformed(message, "unknown_tenant", error_text, event=event, stage=STAGE_TENANT),
        )
    view = ClientView(indexed(store), event.subject)
    outputs: list[Output] = []
    if isinstance(event, ObservedEvent | AgreementObserved):
        outputs = observed(view, event, message)
    elif isinstance(event, AgreementRemoved):
        outputs = agreement_removed(view, event)
    elif isinstance(event, AdditionRemoved):
        outputs = addition_removed(view, event)
    elif isinstance(event, SelectCommand):
        outputs = select(view, event, message)
    elif isinstance(event, SetAutoSyncCommand):
        outputs = set_auto_sync(view, event, message)
    # refresh / edit: not the mapper's
    return Decision(event.type, outputs)


# ---------------------------------------------------------------------------------------------
# Malformed input


def too_large(message: Incoming, error: str) -> list[Output]:
    """The answer to a message whose outputs or state Kafka refused for their size (a record over
    a topic's `max.message.bytes`, e.g. a snapshot too big for the state changelog): the message is
    dead-lettered with reason `too_large` (stage `mapper.produce`) and answered like a malformed one
    (`sync.command.rejected` reason `malformed` / `sync.failed`) when its tenant and client can be
    read from its bytes (pure)."""
    return _malformed(message, "too_large", error, stage=STAGE_PRODUCE)


def _malformed(
    message: Incoming,
    reason: str,
    error: str,
    *,
    event: CloudEvent | ObservedEvent | None = None,
    stage: str = STAGE_PARSE,
    paths: list[str] | None = None,
) -> list[Output]:
    """Dead-letter `message` (reason and `stage` in its headers) and answer it: a command with
    `sync.command.rejected` (reason `unknown_type` / `unknown_tenant` / `malformed`, the failed
    fields' `paths` as `error_paths`) whenever its tenant can be read from the bytes (client `*`
    when no well-formed client can), a PSA event with `sync.failed` when its tenant and client can;
    otherwise the dead letter alone."""
    outputs: list[Output] = [
        DeadLetter(
            key=message.key,
            value=message.value,
            headers=deadletter_headers(
                reason=reason,
                error=error,
                stage=stage,
                topic=message.real_topic,
                partition=message.partition,
                offset=message.offset,
            ),
            reason=reason,
        )
    ]
    if event is not None:
        tenant, client = event.tenantid, event.subject.split(":", 1)[1]
        command_id, command_type = str(event.id), event.type
    else:
        recovered = recover_addressee(message.value)
        if recovered is not None and recovered[1] is None and message.topic == SYNC_COMMANDS:
            recovered = (recovered[0], ALL_CLIENTS, recovered[2], recovered[3])
        if recovered is None or recovered[1] is None:
            log.warning(
                "unaddressable malformed message",
                extra={"topic": message.topic, "partition": message.partition, "offset": message.offset},
            )
            return outputs  # no client to address an event to: the dead letter is the record
        tenant, client, maybe_id, maybe_type = recovered[0], recovered[1], recovered[2], recovered[3]
        command_id, command_type = maybe_id or "unknown", maybe_type or "unknown"
    where = f"{message.real_topic}[{message.partition}]@{message.offset}"
    what = "unreadable" if stage == STAGE_PARSE else "refused"
    if message.topic == SYNC_COMMANDS:
        rejection_reason: RejectionReason = (
            "unknown_type"
            if reason == "unknown_type"
            else "unknown_tenant"
            if reason == "unknown_tenant"
            else "malformed"
        )
        outputs.append(
            Emit(
                SYNC_EVENTS,
                CommandRejected.build(
                    CommandRejectedData(
                        tenant_id=tenant,
                        client_id=client,
                        command_id=command_id[:200],
                        command_type=command_type[:200],
                        reason=rejection_reason,
                        message=f"command rejected ({reason}): {error}"[:2000],
                        error_paths=list(paths or []),
                    ),
                    source=SOURCE,
                    correlationid=command_id[:200],
                ),
            )
        )
    else:
        outputs.append(
            Emit(
                SYNC_EVENTS,
                SyncFailed.build(
                    SyncFailedData(
                        tenant_id=tenant,
                        client_id=client,
                        stage=stage,
                        error_code=reason,
                        message=f"{what} message {where}: {error}"[:2000],
                        retryable=False,
                        operator_action=f"inspect {where} in sync.deadletter.v1 and fix its producer",
                    ),
                    source=SOURCE,
                ),
            )
        )
    return outputs
