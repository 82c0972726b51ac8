"""The mapper's decisions: client state + one incoming message -> state changes + output messages.

Pure apart from the key-value store it is handed (a dict in tests, the worker's StateStore in the app):
no Kafka, no faust, no clock reads beyond CloudEvent timestamps. The faust agent is a thin loop
around `handle`.

State, all under keys that start with the client key `{tenant}:{client}` (so every key of a
client lives in the changelog partition of that client's messages):

    "{client}|auto"           -> b"1" / b"0"       (the auto-sync flag; read on every message)
    "{client}|i|{agreement}"  -> ItemState: one JSON line (snapshot version and read time, its addition
                                 ids, the items' input digests, which items were mapped with which
                                 version and digest = linked, removals), then the
                                 raw `psa.agreement.observed` bytes of the newest snapshot - one
                                 changelog write per observed agreement

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
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import orjson
from pydantic import ValidationError

from schemas.commands import SelectCommand, SetAutoSyncCommand
from schemas.envelope import ALL_CLIENTS, CloudEvent, utcnow
from schemas.events import (
    AutoSyncChanged,
    AutoSyncChangedData,
    CommandRejected,
    CommandRejectedData,
    RejectionReason,
    SyncFailed,
    SyncFailedData,
)
from schemas.fast import (
    MAPPED_TYPE,
    RETIRED_TYPE,
    ObservedEvent,
    ObservedMessage,
    decode_observed,
    encode_mapped,
    encode_retired,
)
from schemas.psa import AdditionRemoved, AgreementObserved, AgreementRemoved
from schemas.psa_digest import AdditionDigests, agreement_digest
from schemas.records import (
    ContractRecordMapped,
    ContractRecordRestored,
    ContractRestoredData,
    RetiredSource,
    contract_key,
)
from schemas.topics import CONTRACT_RECORDS, PSA_AGREEMENTS, SYNC_COMMANDS, SYNC_EVENTS, parse
from services.common.kafka import (
    classify_parse_error,
    deadletter_headers,
    describe_error,
    error_paths,
    recover_addressee,
)
from services.mapper.mapping import MappingError, map_items_fields

log = logging.getLogger(__name__)

SOURCE: Final = "contract-sync/mapper"
STAGE_PARSE: Final = "mapper.parse"
STAGE_MAP: Final = "mapper.map"
STAGE_TENANT: Final = "mapper.tenant"
STAGE_PRODUCE: Final = "mapper.produce"

Store = MutableMapping[str, bytes]


def parse_input(topic: str, raw: bytes) -> CloudEvent | ObservedEvent:
    """One input message: `psa.agreement.observed` through the compiled decoder
    (`schemas.fast.decode_observed`); whatever it declines, and every other type, through
    `schemas.topics.parse`, which raises `pydantic.ValidationError` / `ValueError` with its reasons.
    Both accept and reject the same messages with the same values (property tests)."""
    if topic == PSA_AGREEMENTS:
        fast = decode_observed(raw)
        if fast is not None:
            return fast
    return parse(topic, raw)


# ---------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass(frozen=True)
class Incoming:
    """One consumed Kafka message; `topic` is the canonical name (`psa.agreements.v1`, ...)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    source_topic: str = ""
    """The topic's real name when a prefix is configured (named in dead-letter headers)."""

    @property
    def real_topic(self) -> str:
        return self.source_topic or self.topic


class Emit:
    """Produce one event to the canonical `topic`, keyed by its client.

    Built from a model (`Emit(topic, event)`) or, on the hot path, from its encoded bytes
    (`Emit.encoded`); either side is derived on first access (`value` serialises the model,
    `event` parses the bytes with `schemas.topics.parse`), so callers see the same thing.
    """

    __slots__ = ("_event", "_value", "key", "topic", "type")

    def __init__(self, topic: str, event: CloudEvent) -> None:
        self.topic = topic
        self.key: bytes = event.key
        self.type: str = event.type
        self._event: CloudEvent | None = event
        self._value: bytes | None = None

    @classmethod
    def encoded(cls, topic: str, *, key: bytes, type: str, value: bytes) -> Emit:
        emit = cls.__new__(cls)
        emit.topic, emit.key, emit.type = topic, key, type
        emit._event, emit._value = None, value
        return emit

    @property
    def event(self) -> CloudEvent:
        if self._event is None:
            assert self._value is not None
            self._event = parse(self.topic, self._value)
        return self._event

    @property
    def value(self) -> bytes:
        if self._value is None:
            assert self._event is not None
            self._value = self._event.to_bytes()
        return self._value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Emit) and (self.topic, self.event) == (other.topic, other.event)

    __hash__ = None  # type: ignore[assignment]  # mutable caches; compared by content

    def __repr__(self) -> str:
        return f"Emit({self.topic!r}, {self.type!r}, key={self.key!r})"


@dataclass(frozen=True)
class DeadLetter:
    """Produce `value` unchanged to `sync.deadletter.v1` with `headers` (schemas.topics.DLQ_*)."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    reason: str


Output = Emit | DeadLetter


# ---------------------------------------------------------------------------------------------
# Stored state


@dataclass
class ItemState:
    """One agreement and its additions: the stored snapshot's version, the digests of its items'
    mapped inputs (`schemas.psa_digest`), and what was mapped when.

    What was mapped is recorded as a token `{version}#{digest}` per item, never the version alone:
    ConnectWise versions have one-second resolution, so a second change within the same second has
    the same version and is told apart by its digest."""

    version: str
    additions: list[int]
    snapshot: bytes
    mapped_agreement: str | None = None
    mapped_additions: dict[int, str] = field(default_factory=dict)
    removed: bool = False
    removed_additions: set[int] = field(default_factory=set)
    removed_at: str | None = None
    """When the newest removal (of the agreement or one of its additions) was observed (ISO 8601)."""
    observed_at: str | None = None
    """The stored snapshot's `observed_at`: of two snapshots with the same version the later read wins."""
    agreement_digest: str = ""
    addition_digests: dict[int, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        meta = orjson.dumps(
            {
                "v": self.version,
                "add": self.additions,
                "ma": self.mapped_agreement,
                "mx": {str(k): v for k, v in self.mapped_additions.items()},
                "gone": self.removed,
                "gx": sorted(self.removed_additions),
                "ra": self.removed_at,
                "o": self.observed_at,
                "da": self.agreement_digest,
                "dx": {str(k): v for k, v in self.addition_digests.items()},
            }
        )
        return b"".join((meta, b"\n", self.snapshot))

    @classmethod
    def decode(cls, raw: bytes) -> ItemState:
        meta, _, snapshot = raw.partition(b"\n")  # compact JSON never contains a raw newline
        doc = orjson.loads(meta)
        return cls(
            version=doc["v"],
            additions=list(doc["add"]),
            snapshot=snapshot,
            mapped_agreement=doc["ma"],
            mapped_additions={int(k): v for k, v in doc["mx"].items()},
            removed=bool(doc["gone"]),
            removed_additions=set(doc["gx"]),
            removed_at=doc.get("ra"),
            # state written before digests existed: no digest, so every item counts as not mapped
            observed_at=doc.get("o"),
            agreement_digest=doc.get("da", ""),
            addition_digests={int(k): v for k, v in doc.get("dx", {}).items()},
        )

    def agreement_token(self) -> str:
        """What mapping the agreement now means: `{version}#{digest}`."""
        return f"{self.version}#{self.agreement_digest}"

    def addition_token(self, addition_id: int) -> str:
        return f"{self.version}#{self.addition_digests.get(addition_id, '')}"

    def pending(self) -> tuple[bool, list[int]]:
        """(agreement not mapped with its current content, additions not mapped with theirs)."""
        if self.removed:
            return False, []
        agreement = self.mapped_agreement != self.agreement_token()
        additions = [
            a
            for a in self.additions
            if a not in self.removed_additions and self.mapped_additions.get(a) != self.addition_token(a)
        ]
        return agreement, additions


ITEM_MARK: Final = "|i|"


def _item_key(key: str) -> tuple[str, int] | None:
    """(client, agreement id) of an item key `{client}|i|{agreement}`, else None (pure)."""
    client, mark, agreement = key.rpartition(ITEM_MARK)
    if not mark or not agreement.isdigit():
        return None
    return client, int(agreement)


def _additions_of(raw: bytes) -> tuple[int, ...]:
    """The addition ids an encoded ItemState lists (its first line only: no snapshot parse)."""
    meta = raw.partition(b"\n")[0]
    try:
        additions = orjson.loads(meta)["add"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ()
    return tuple(a for a in additions if isinstance(a, int))


@dataclass
class _ClientEntry:
    agreements: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """Each agreement of the client -> the addition ids its stored snapshot lists."""
    owners: dict[int, set[int]] = field(default_factory=dict)
    """Addition id -> the agreements whose stored snapshots list it (normally exactly one)."""


class ClientIndex:
    """Per client: its agreements and which agreement lists each addition.

    Derived from the item keys of a store, never stored itself: `IndexedStore` keeps it in step
    with every write, and `rebuild` recomputes it after the store was filled behind its back
    (changelog recovery). A lookup costs O(1), listing a client's agreements O(that
    client), whatever the size of the store.
    """

    def __init__(self) -> None:
        self._clients: dict[str, _ClientEntry] = {}

    def put(self, client: str, agreement_id: int, additions: tuple[int, ...]) -> None:
        entry = self._clients.get(client)
        if entry is None:
            entry = self._clients[client] = _ClientEntry()
        before = entry.agreements.get(agreement_id)
        if before == additions:
            return
        self._unlist(entry, agreement_id, before or ())
        for addition_id in additions:
            entry.owners.setdefault(addition_id, set()).add(agreement_id)
        entry.agreements[agreement_id] = additions

    @staticmethod
    def _unlist(entry: _ClientEntry, agreement_id: int, additions: tuple[int, ...]) -> None:
        owners = entry.owners
        for addition_id in additions:
            listed = owners.get(addition_id)
            if listed is not None:
                listed.discard(agreement_id)
                if not listed:
                    del owners[addition_id]

    def drop(self, client: str, agreement_id: int) -> None:
        entry = self._clients.get(client)
        if entry is None:
            return
        self._unlist(entry, agreement_id, entry.agreements.pop(agreement_id, ()))
        if not entry.agreements:
            del self._clients[client]

    def on_write(self, key: str, value: bytes | None) -> None:
        """Follow one write (`value` None: a delete) of any key; only item keys matter."""
        item = _item_key(key)
        if item is None:
            return
        if value is None:
            self.drop(*item)
        else:
            self.put(*item, _additions_of(value))

    def rebuild(self, data: Mapping[str, bytes]) -> None:
        """Recompute the whole index from `data` (one pass over the store)."""
        self._clients = {}
        for key in list(data.keys()):
            if ITEM_MARK in key:
                raw = data.get(key)
                if raw is not None:
                    self.on_write(key, raw)

    def agreements(self, client: str) -> list[int]:
        entry = self._clients.get(client)
        return sorted(entry.agreements) if entry is not None else []

    def owner(self, client: str, addition_id: int) -> int | None:
        """The agreement listing `addition_id` (the lowest id if ConnectWise ever lists it twice)."""
        entry = self._clients.get(client)
        listed = entry.owners.get(addition_id) if entry is not None else None
        return min(listed) if listed else None


class IndexedStore(MutableMapping[str, bytes]):
    """A key-value store (`data`: a dict, a faust table's data) with its `ClientIndex`.

    Every write through it updates the index; `rebuild_index` after `data` changed behind its
    back. Plain mappings handed to `decide` are wrapped (and indexed in one pass) per call."""

    def __init__(self, data: MutableMapping[str, bytes] | None = None) -> None:
        self.data: MutableMapping[str, bytes] = {} if data is None else data
        self.index = ClientIndex()
        self.index.rebuild(self.data)

    def rebuild_index(self) -> None:
        self.index.rebuild(self.data)

    def __getitem__(self, key: str) -> bytes:
        return self.data[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        self.data[key] = value
        self.index.on_write(key, value)

    def __delitem__(self, key: str) -> None:
        del self.data[key]
        self.index.on_write(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.data.keys()))

    def __len__(self) -> int:
        return len(self.data)


def indexed(store: Store) -> IndexedStore:
    return store if isinstance(store, IndexedStore) else IndexedStore(store)


class ClientView:
    """Typed access to one client's keys in the store."""

    def __init__(self, store: IndexedStore, client: str) -> None:
        self.store = store
        self.client = client

    def _k(self, *parts: object) -> str:
        return "|".join((self.client, *map(str, parts)))

    def auto_sync(self) -> bool:
        return self.store.get(self._k("auto")) == b"1"

    def put_auto_sync(self, enabled: bool) -> None:
        self.store[self._k("auto")] = b"1" if enabled else b"0"

    def agreement_ids(self) -> list[int]:
        """Every agreement of the client ever observed (from the index: O(this client))."""
        return self.store.index.agreements(self.client)

    def owner_of(self, addition_id: int) -> int | None:
        """The agreement whose newest snapshot lists `addition_id` (from the index: O(1))."""
        return self.store.index.owner(self.client, addition_id)

    def item(self, agreement_id: int) -> ItemState | None:
        raw = self.store.get(self._k("i", agreement_id))
        return ItemState.decode(raw) if raw is not None else None

    def put_item(self, agreement_id: int, item: ItemState) -> None:
        self.store[self._k("i", agreement_id)] = item.encode()


# ---------------------------------------------------------------------------------------------
# Entry point


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
        outputs = _observed(view, event, message)
    elif isinstance(event, AgreementRemoved):
        outputs = _agreement_removed(view, event)
    elif isinstance(event, AdditionRemoved):
        outputs = _addition_removed(view, event)
    elif isinstance(event, SelectCommand):
        outputs = _select(view, event, message)
    elif isinstance(event, SetAutoSyncCommand):
        outputs = _set_auto_sync(view, event, message)
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


# ---------------------------------------------------------------------------------------------
# Mapping helpers


def _map(
    view: ClientView,
    event: ObservedMessage,
    snapshot_raw: bytes,
    item: ItemState,
    *,
    agreement: bool,
    addition_ids: Iterable[int],
    correlationid: str | None,
    source: Incoming,
) -> list[Output]:
    """Map the named items of one snapshot, record them as mapped (= linked) with their content
    (`{version}#{digest}` of each item).

    Records are encoded straight to bytes (`schemas.fast.encode_mapped`), not built as pydantic models.
    """
    outputs: list[Output] = []
    now = utcnow()
    key = event.key
    digests = (item.agreement_digest, item.addition_digests) if item.agreement_digest else None
    for result in map_items_fields(
        event.data, agreement=agreement, addition_ids=addition_ids, digests=digests
    ):
        if isinstance(result, MappingError):
            outputs.extend(_mapping_failed(event, snapshot_raw, result, source))
            continue
        value = encode_mapped(result, source=SOURCE, time=now, correlationid=correlationid)
        outputs.append(Emit.encoded(CONTRACT_RECORDS, key=key, type=MAPPED_TYPE, value=value))
        record_source = result["source"]
        token = f"{item.version}#{record_source['psa_digest']}"
        if record_source["kind"] == "agreement":
            item.mapped_agreement = token
        else:
            item.mapped_additions[record_source["addition_id"]] = token
    return outputs


def _mapping_failed(
    event: ObservedMessage, snapshot_raw: bytes, error: MappingError, source: Incoming
) -> list[Output]:
    reason = f"mapping.{error.code}"
    text = f"{error.kind} {error.item_id} of agreement {event.data.agreement.id}: {error.message}"
    log.warning(
        "mapping failed",
        extra={"reason": reason, "agreement_id": event.data.agreement.id, "item_id": error.item_id},
    )
    return [
        DeadLetter(
            key=event.key,
            value=snapshot_raw,
            headers=deadletter_headers(
                reason=reason,
                error=text,
                stage=STAGE_MAP,
                topic=source.real_topic,
                partition=source.partition,
                offset=source.offset,
            ),
            reason=reason,
        ),
        Emit(
            SYNC_EVENTS,
            SyncFailed.build(
                SyncFailedData(
                    tenant_id=event.data.tenant_id,
                    client_id=event.data.client_id,
                    stage=STAGE_MAP,
                    error_code=reason,
                    message=text[:2000],
                    retryable=False,
                    operator_action=f"correct {error.kind} {error.item_id} in ConnectWise (see the error); "
                    "it maps on its next change",
                ),
                source=SOURCE,
            ),
        ),
    ]


# ---------------------------------------------------------------------------------------------
# PSA events


def _observed(view: ClientView, event: ObservedMessage, message: Incoming) -> list[Output]:
    data = event.data
    agreement_id = data.agreement.id
    item = view.item(agreement_id)
    stored = datetime.fromisoformat(item.version) if item is not None else None
    removed_at = datetime.fromisoformat(item.removed_at) if item is not None and item.removed_at else None
    # read after the newest removal was observed: ConnectWise answered it again, so it is back
    seen_after_removal = removed_at is not None and data.observed_at > removed_at
    # An older snapshot never replaces a newer one. A removal is undone by a strictly newer
    # snapshot, or by one of the same version read after the removal (the item answered again:
    # a scope that hid it was widened, a proxy stopped misrouting); one of the same version read
    # before the removal is stale. Of two snapshots with the same version (two changes within
    # ConnectWise's one-second `lastUpdated`) the one read later wins.
    if (
        item is not None
        and stored is not None
        and (
            data.psa_last_updated < stored
            or (
                data.psa_last_updated == stored
                and (
                    not seen_after_removal
                    if item.removed
                    else _read_earlier(data.observed_at, item.observed_at)
                )
            )
        )
    ):
        log.info(
            "ignored stale snapshot",
            extra={"agreement_id": agreement_id, "event_id": str(event.id), "stored_version": item.version},
        )
        return []
    addition_ids = [a.id for a in data.additions]
    version = data.psa_last_updated.isoformat()
    restored_agreement = False
    restored_additions: list[int] = []
    if item is None:
        item = ItemState(version=version, additions=addition_ids, snapshot=message.value)
    else:
        if stored is not None and (data.psa_last_updated > stored or seen_after_removal):
            restored_agreement = item.removed
            # a removed agreement took all its additions with it; otherwise only those removed alone
            restored_additions = (
                list(addition_ids)
                if restored_agreement
                else [a for a in addition_ids if a in item.removed_additions and seen_after_removal]
            )
            item.removed = False
            item.removed_additions -= set(addition_ids)
        item.version = version
        item.additions = addition_ids
        item.snapshot = message.value
    item.observed_at = data.observed_at.isoformat()
    item.agreement_digest = agreement_digest(data)
    digest_of = AdditionDigests(data)
    item.addition_digests = {a.id: digest_of(a) for a in data.additions}

    outputs: list[Output] = []
    if restored_agreement or restored_additions:
        outputs = _restore(view, event, message, item, restored_agreement, restored_additions)
    if view.auto_sync():
        agreement_pending, additions_pending = item.pending()
        outputs.extend(
            _map(
                view,
                event,
                message.value,
                item,
                agreement=agreement_pending,
                addition_ids=additions_pending,
                correlationid=None,
                source=message,
            )
        )
    view.put_item(agreement_id, item)
    return outputs


def _restore(
    view: ClientView,
    event: ObservedMessage,
    message: Incoming,
    item: ItemState,
    agreement: bool,
    additions: list[int],
) -> list[Output]:
    """A removed agreement (or removed additions) answered again: map its linked items at the
    snapshot's version (`contract.record.mapped`) and say they are restored
    (`contract.record.restored`, after the mapped record: the writer makes the contract active again).
    Items never linked are back in the catalog only."""
    linked_agreement = agreement and item.mapped_agreement is not None
    linked_additions = [a for a in additions if a in item.mapped_additions]
    outputs = _map(
        view,
        event,
        message.value,
        item,
        agreement=linked_agreement,
        addition_ids=linked_additions,
        correlationid=None,
        source=message,
    )
    data = event.data
    records = [o.event for o in outputs if isinstance(o, Emit) and o.type == MAPPED_TYPE]
    mapped = {
        (r.data.source.kind, r.data.source.addition_id or r.data.source.agreement_id)
        for r in records
        if isinstance(r, ContractRecordMapped)
    }
    evidence = f"observed again at {data.observed_at.isoformat()} after its removal"
    for kind, item_id in sorted(mapped):
        outputs.append(
            Emit(
                CONTRACT_RECORDS,
                ContractRecordRestored.build(
                    ContractRestoredData(
                        tenant_id=data.tenant_id,
                        client_id=data.client_id,
                        contract_key=contract_key(data.tenant_id, kind, item_id),
                        source=RetiredSource(
                            kind=kind,
                            agreement_id=data.agreement.id,
                            addition_id=item_id if kind == "addition" else None,
                        ),
                        observed_at=data.observed_at,
                        evidence=evidence,
                    ),
                    source=SOURCE,
                ),
            )
        )
    log.info(
        "removed items answered again: restored",
        extra={"agreement_id": data.agreement.id, "restored": len(mapped)},
    )
    return outputs


def _read_earlier(observed_at: datetime, stored_observed_at: str | None) -> bool:
    """Whether a snapshot read at `observed_at` was read before the stored one (unknown: no)."""
    return stored_observed_at is not None and observed_at < datetime.fromisoformat(stored_observed_at)


def _retired(
    event: AgreementRemoved | AdditionRemoved,
    kind: Literal["agreement", "addition"],
    item_id: int,
    evidence: str,
) -> Emit:
    """The item's `contract.record.retired`, encoded straight to bytes (`schemas.fast.encode_retired`)."""
    data = event.data
    value = encode_retired(
        tenant_id=data.tenant_id,
        client_id=data.client_id,
        contract_key=contract_key(data.tenant_id, kind, item_id),
        kind=kind,
        agreement_id=data.agreement_id,
        addition_id=item_id if kind == "addition" else None,
        observed_at=data.observed_at,
        evidence=evidence[:500],
        source=SOURCE,
        time=utcnow(),
    )
    return Emit.encoded(CONTRACT_RECORDS, key=event.key, type=RETIRED_TYPE, value=value)


def _newest(stored: str | None, observed_at: datetime) -> str:
    if stored is not None and datetime.fromisoformat(stored) >= observed_at:
        return stored
    return observed_at.isoformat()


def _evidence(event: AgreementRemoved | AdditionRemoved) -> str:
    ev = event.data.evidence
    return f"{ev.method}: {ev.detail}" if ev.detail else ev.method


def _agreement_removed(view: ClientView, event: AgreementRemoved) -> list[Output]:
    agreement_id = event.data.agreement_id
    item = view.item(agreement_id)
    if item is None or item.removed:
        return []
    outputs: list[Output] = []
    evidence = _evidence(event)
    if item.mapped_agreement is not None:
        outputs.append(_retired(event, "agreement", agreement_id, evidence))
    for addition_id in sorted(item.mapped_additions):
        if addition_id not in item.removed_additions:
            outputs.append(
                _retired(
                    event, "addition", addition_id, f"its agreement {agreement_id} was removed ({evidence})"
                )
            )
    item.removed = True
    item.removed_at = _newest(item.removed_at, event.data.observed_at)
    view.put_item(agreement_id, item)
    return outputs


def _addition_removed(view: ClientView, event: AdditionRemoved) -> list[Output]:
    agreement_id, addition_id = event.data.agreement_id, event.data.addition_id
    item = view.item(agreement_id)
    if item is None or addition_id in item.removed_additions:
        return []
    outputs: list[Output] = []
    if addition_id in item.mapped_additions:
        outputs.append(_retired(event, "addition", addition_id, _evidence(event)))
    item.removed_additions.add(addition_id)
    item.removed_at = _newest(item.removed_at, event.data.observed_at)
    view.put_item(agreement_id, item)
    return outputs


# ---------------------------------------------------------------------------------------------
# Commands


def _rejected(
    command: SelectCommand, reason: Literal["auto_sync_enabled", "not_in_catalog"], message: str, **ids: Any
) -> Emit:
    return Emit(
        SYNC_EVENTS,
        CommandRejected.build(
            CommandRejectedData(
                tenant_id=command.data.tenant_id,
                client_id=command.data.client_id,
                command_id=str(command.id),
                command_type=command.type,
                reason=reason,
                message=message,
                **ids,
            ),
            source=SOURCE,
            correlationid=command.id,
        ),
    )


@dataclass
class _Wanted:
    agreement: bool = False
    additions: list[int] = field(default_factory=list)


_REFRESH_HINT: Final = "refresh the client (sync.command.refresh) and select again from the updated list"


def _select(view: ClientView, command: SelectCommand, message: Incoming) -> list[Output]:
    data = command.data
    if view.auto_sync():
        return [
            _rejected(
                command,
                "auto_sync_enabled",
                "auto-sync is on for this client, so its contracts already follow ConnectWise; "
                "turn auto-sync off to sync selected items manually",
                agreement_ids=list(data.agreement_ids),
                addition_ids=list(data.addition_ids),
            )
        ]
    # wanted items grouped by agreement, in first-seen order
    wanted: dict[int, _Wanted] = {}
    unknown_agreements: list[int] = []
    unknown_additions: list[int] = []
    items: dict[int, ItemState | None] = {}

    def load(agreement_id: int) -> ItemState | None:
        if agreement_id not in items:
            items[agreement_id] = view.item(agreement_id)
        return items[agreement_id]

    # an addition listed by an agreement this command names belongs to that one; any other is
    # looked up in the client's index (O(1) each: a command costs O(its ids), never O(the store))
    named_owner: dict[int, int] = {}
    for agreement_id in dict.fromkeys(data.agreement_ids):
        item = load(agreement_id)
        if item is None or item.removed:
            unknown_agreements.append(agreement_id)
            continue
        wanted.setdefault(agreement_id, _Wanted()).agreement = True
        for addition_id in item.additions:
            named_owner.setdefault(addition_id, agreement_id)
    listed: dict[int, set[int]] = {}
    for addition_id in dict.fromkeys(data.addition_ids):
        owner = named_owner.get(addition_id)
        if owner is None:
            owner = view.owner_of(addition_id)
        item = load(owner) if owner is not None else None
        if owner is not None and item is not None and owner not in listed:
            listed[owner] = set(item.additions)
        if (
            owner is None
            or item is None
            or item.removed
            or addition_id not in listed[owner]
            or addition_id in item.removed_additions
        ):
            unknown_additions.append(addition_id)
            continue
        wanted.setdefault(owner, _Wanted()).additions.append(addition_id)

    outputs: list[Output] = []
    for agreement_id in unknown_agreements:
        outputs.append(
            _rejected(
                command,
                "not_in_catalog",
                f"agreement {agreement_id} has not been seen in ConnectWise for this client (or was removed); "
                + _REFRESH_HINT,
                agreement_ids=[agreement_id],
            )
        )
    for addition_id in unknown_additions:
        outputs.append(
            _rejected(
                command,
                "not_in_catalog",
                f"addition {addition_id} has not been seen in ConnectWise for this client (or was removed); "
                + _REFRESH_HINT,
                addition_ids=[addition_id],
            )
        )
    for agreement_id, selection in wanted.items():
        item = items[agreement_id]
        if item is None:  # pragma: no cover - wanted only holds loaded items
            continue
        outputs.extend(
            _map_stored(view, agreement_id, item, selection.agreement, selection.additions, command, message)
        )
    return outputs


def _set_auto_sync(view: ClientView, command: SetAutoSyncCommand, message: Incoming) -> list[Output]:
    data = command.data
    view.put_auto_sync(data.enabled)
    outputs: list[Output] = [
        Emit(
            SYNC_EVENTS,
            AutoSyncChanged.build(
                AutoSyncChangedData(
                    tenant_id=data.tenant_id,
                    client_id=data.client_id,
                    enabled=data.enabled,
                    requested_by=data.requested_by,
                ),
                source=SOURCE,
                correlationid=command.id,
            ),
        )
    ]
    if not data.enabled:
        return outputs
    for agreement_id in view.agreement_ids():
        item = view.item(agreement_id)
        if item is None:
            continue
        agreement_pending, additions_pending = item.pending()
        if not agreement_pending and not additions_pending:
            continue
        outputs.extend(
            _map_stored(view, agreement_id, item, agreement_pending, additions_pending, command, message)
        )
    return outputs


def _map_stored(
    view: ClientView,
    agreement_id: int,
    item: ItemState,
    agreement: bool,
    addition_ids: Iterable[int],
    command: CloudEvent,
    message: Incoming,
) -> list[Output]:
    """Map the stored snapshot of one agreement for a command (select, auto-sync on) and save
    the item's new linked/mapped state."""
    raw = item.snapshot
    snapshot = parse_input(PSA_AGREEMENTS, raw)
    assert isinstance(snapshot, ObservedEvent | AgreementObserved)
    outputs = _map(
        view,
        snapshot,
        raw,
        item,
        agreement=agreement,
        addition_ids=addition_ids,
        correlationid=str(command.id),
        source=message,
    )
    view.put_item(agreement_id, item)
    return outputs
