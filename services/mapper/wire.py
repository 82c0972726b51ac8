"""`contract.record.mapped` messages as bytes, without pydantic: the mapper's hot path.

`encode_mapped` wraps `mapping.RecordFields` in the CloudEvents envelope and serialises it with
orjson, producing what `ContractRecordMapped.build(ContractRecordData(**fields), ...).to_bytes()`
would: the same fields in the same order, absent values omitted (`exclude_none`), Decimal amounts
as strings, dates as `YYYY-MM-DD`, timestamps in UTC with `Z`. Nothing is validated here: the
record's constraints hold by construction in `mapping`, and a property test asserts that these
bytes parse with `schemas.topics.parse` into exactly the model the validated path builds.

Pure apart from the fresh event id (random) and the envelope time the caller passes.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import orjson

from schemas.records import ContractRecordMapped
from services.mapper.mapping import RecordFields

MAPPED_TYPE: Final = ContractRecordMapped.model_fields["type"].default
_OPTIONS: Final = orjson.OPT_UTC_Z


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # as DecimalString's serializer
    raise TypeError(f"{type(value).__name__} is not part of a contract record")


def new_event_id() -> str:
    """A random (version 4) UUID as text, without building a `uuid.UUID`."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def encode_mapped(
    fields: RecordFields, *, source: str, time: datetime, correlationid: str | None = None
) -> bytes:
    """The Kafka value of one `contract.record.mapped` event (compact JSON, fresh event id).

    `time` must be timezone-aware (it is written in UTC); `fields` come from
    `mapping.map_items_fields` and are not checked again.
    """
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": new_event_id(),
        "source": source,
        "type": MAPPED_TYPE,
        "time": time.astimezone(UTC),
        "subject": f"{fields['tenant_id']}:{fields['client_id']}",
        "datacontenttype": "application/json",
        "tenantid": fields["tenant_id"],
    }
    if correlationid is not None:
        envelope["correlationid"] = correlationid
    envelope["data"] = fields
    return orjson.dumps(envelope, default=_default, option=_OPTIONS)
