"""The mapper's input parser (compiled decoder for observed snapshots, else the wire parse) accepts and
rejects exactly what the wire contract's parser does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mapper_factories import cw_addition, cw_agreement, observed, select
from pydantic import ValidationError

from schemas.fast import ObservedEvent
from schemas.psa import AgreementObserved
from schemas.topics import PSA_AGREEMENTS, SYNC_COMMANDS, parse
from services.common.kafka import describe_error
from services.mapper.mapping import map_items
from services.mapper.messages import parse_input


def _document() -> dict[str, Any]:
    event = observed(
        cw_agreement(unknownFlag=True, customFields=[{"id": 1, "value": {"nested": [1, 2]}}]),
        [cw_addition(id=1, uom="Each", extPrice=10.5), cw_addition(id=2, serialNumber=None, sku="X")],
    )
    doc: dict[str, Any] = json.loads(event.to_bytes())
    return doc


def test_the_compiled_decoder_maps_to_the_same_records_as_the_wire_parse() -> None:
    raw = json.dumps(_document()).encode()
    fast, full = parse_input(PSA_AGREEMENTS, raw), parse(PSA_AGREEMENTS, raw)
    assert isinstance(fast, ObservedEvent) and isinstance(full, AgreementObserved)  # really the fast path
    assert (fast.id, fast.key, fast.type) == (full.id, full.key, full.type)
    ids = [a.id for a in full.data.additions]
    assert map_items(fast.data, agreement=True, addition_ids=ids) == map_items(
        full.data, agreement=True, addition_ids=ids
    )


def _set(path: str, value: Any) -> dict[str, Any]:
    doc = _document()
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


BAD = {
    "agreement_id_text": _set("data.agreement.id", "abc"),
    "agreement_status_unknown": _set("data.agreement.agreementStatus", "Paused"),
    "bill_amount_text": _set("data.agreement.billAmount", "lots"),
    "nested_currency_decimals_text": _set("data.agreement.currency", {"numberOfDecimals": "two"}),
    "unread_typed_field_still_checked": _set("data.agreement._info", {"lastUpdated": "yesterday"}),
    "addition_quantity_text": _set("data.additions.1.quantity", "many"),
    "addition_bill_customer_unknown": _set("data.additions.0.billCustomer", "Sometimes"),
    "addition_missing_id": _set("data.additions.0", {"quantity": 1}),
    "unknown_type": _set("type", "psa.agreement.exploded"),
    "subject_mismatch": _set("subject", "acme:999"),
    "bad_time_zone_type": _set("data.time_zone", 5),
}


@pytest.mark.parametrize("doc", BAD.values(), ids=BAD.keys())
def test_the_input_parser_rejects_what_the_wire_parse_rejects_with_the_same_error(
    doc: dict[str, Any],
) -> None:
    raw = json.dumps(doc).encode()
    with pytest.raises(ValidationError) as full:
        parse(PSA_AGREEMENTS, raw)
    with pytest.raises(ValidationError) as ours:
        parse_input(PSA_AGREEMENTS, raw)
    assert describe_error(ours.value) == describe_error(full.value)


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b"", b"null"])
def test_the_input_parser_rejects_unreadable_bytes_like_the_wire_parse(raw: bytes) -> None:
    with pytest.raises(ValidationError) as full:
        parse(PSA_AGREEMENTS, raw)
    with pytest.raises(ValidationError) as ours:
        parse_input(PSA_AGREEMENTS, raw)
    assert describe_error(ours.value) == describe_error(full.value)


def test_other_topics_use_the_wire_parse_unchanged() -> None:
    raw = select([1]).to_bytes()
    assert parse_input(SYNC_COMMANDS, raw) == parse(SYNC_COMMANDS, raw)
    with pytest.raises(ValueError):
        parse_input("no.such.topic", raw)
