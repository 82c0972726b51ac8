"""Decisions on commands: select and set_auto_sync (the mapper's two commands).

`select` maps the named items (rejected whole while auto-sync is on, per id for ids not in the
catalog); `set_auto_sync` flips the flag and, when turned on, maps everything pending.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from schemas.commands import SelectCommand, SetAutoSyncCommand
from schemas.envelope import CloudEvent
from schemas.events import (
    AutoSyncChanged,
    AutoSyncChangedData,
    CommandRejected,
    CommandRejectedData,
)
from schemas.fast import (
    ObservedEvent,
)
from schemas.psa import AgreementObserved
from schemas.topics import PSA_AGREEMENTS, SYNC_EVENTS
from services.mapper.client_state import (
    ClientView,
    ItemState,
)
from services.mapper.messages import (
    SOURCE,
    Emit,
    Incoming,
    Output,
    parse_input,
)
from services.mapper.record_outputs import map_to_outputs


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


def select(view: ClientView, command: SelectCommand, message: Incoming) -> list[Output]:
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


def set_auto_sync(view: ClientView, command: SetAutoSyncCommand, message: Incoming) -> list[Output]:
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
    outputs = map_to_outputs(
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
