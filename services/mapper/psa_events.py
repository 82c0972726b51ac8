"""Decisions on PSA events: observed snapshots (store, map, restore) and removals (retire).

An observed snapshot is stored unless older than the stored one, mapped while auto-sync is on, and
restores removed items that answer again; a removal retires the linked items.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

from schemas.envelope import utcnow
from schemas.fast import (
    MAPPED_TYPE,
    RETIRED_TYPE,
    ObservedMessage,
    encode_retired,
)
from schemas.psa import AdditionRemoved, AgreementRemoved
from schemas.psa_digest import AdditionDigests, agreement_digest
from schemas.records import (
    ContractRecordMapped,
    ContractRecordRestored,
    ContractRestoredData,
    RetiredSource,
    contract_key,
)
from schemas.topics import CONTRACT_RECORDS
from services.mapper.client_state import (
    ClientView,
    ItemState,
)
from services.mapper.messages import (
    SOURCE,
    Emit,
    Incoming,
    Output,
)
from services.mapper.record_outputs import map_to_outputs

log = logging.getLogger(__name__)


def observed(view: ClientView, event: ObservedMessage, message: Incoming) -> list[Output]:
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
            map_to_outputs(
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
    outputs = map_to_outputs(
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


def agreement_removed(view: ClientView, event: AgreementRemoved) -> list[Output]:
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


def addition_removed(view: ClientView, event: AdditionRemoved) -> list[Output]:
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
