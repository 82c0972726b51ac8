"""A snapshot's items -> output messages: encoded contract records, or dead letters when unmappable.

Each mapped item is recorded as mapped (= linked) with the snapshot's version and input digest;
each unmappable one is dead-lettered with a `sync.failed`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from schemas.envelope import utcnow
from schemas.events import (
    SyncFailed,
    SyncFailedData,
)
from schemas.fast import (
    MAPPED_TYPE,
    ObservedMessage,
    encode_mapped,
)
from schemas.topics import CONTRACT_RECORDS, SYNC_EVENTS
from services.common.kafka import (
    deadletter_headers,
)
from services.mapper.client_state import (
    ClientView,
    ItemState,
)
from services.mapper.mapping import MappingError, map_items_fields
from services.mapper.messages import (
    SOURCE,
    STAGE_MAP,
    DeadLetter,
    Emit,
    Incoming,
    Output,
)

log = logging.getLogger(__name__)


def map_to_outputs(
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
            outputs.extend(mapping_failed(event, snapshot_raw, result, source))
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


def mapping_failed(
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
