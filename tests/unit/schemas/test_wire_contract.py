"""The wire contract: envelopes, keys, unions per topic, strictness and JSON Schema export."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest
from pydantic import ValidationError

from schemas import (
    CONTRACT_RECORDS,
    PSA_AGREEMENTS,
    SYNC_COMMANDS,
    SYNC_EVENTS,
    TOPICS,
    AgreementObserved,
    AgreementObservedData,
    CommandRejected,
    CommandRejectedData,
    ContractRecordData,
    ContractRecordMapped,
    EditCommand,
    EditData,
    Money,
    RecordSource,
    SelectCommand,
    SelectData,
    message_key,
    parse,
)
from schemas import export as schema_export

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AGREEMENT = {
    "id": 1234,
    "name": "Acme - Managed Services",
    "company": {"id": 250, "identifier": "AcmeCorp", "name": "Acme Corporation", "_info": {}},
    "billAmount": 1500.5,
    "billingCycle": {"id": 2, "name": "Monthly", "_info": {}},
    "currency": {"id": 7, "currencyCode": "USD", "_info": {}},
    "startDate": "2024-01-01T00:00:00Z",
    "someFutureField": {"nested": [1, 2, 3]},
    "_info": {"lastUpdated": "2025-03-14T16:02:11Z", "updatedBy": "jsmith"},
}
ADDITION = {
    "id": 5678,
    "product": {"id": 301, "identifier": "M365-BP", "_info": {}},
    "quantity": 25.0,
    "lessIncluded": 0.0,
    "unitPrice": 22.1,
    "billCustomer": "Billable",
    "agreementId": 1234,
    "_info": {"lastUpdated": "2025-03-10T09:15:42Z"},
}


def observed(**overrides: object) -> AgreementObserved:
    data = {
        "tenant_id": "acme",
        "client_id": "250",
        "agreement": AGREEMENT,
        "additions": [ADDITION],
        "psa_last_updated": NOW,
        "observed_at": NOW,
        **overrides,
    }
    return AgreementObserved.build(AgreementObservedData.model_validate(data), source="contract-sync/poller")


def test_observed_snapshot_round_trips_connectwise_fields_unchanged_including_unknown_ones() -> None:
    event = observed()
    document = json.loads(event.to_bytes())
    assert document["data"]["agreement"] == AGREEMENT
    assert document["data"]["additions"] == [ADDITION]
    assert parse(PSA_AGREEMENTS, event.to_bytes()) == event


def test_connectwise_money_is_read_as_exact_decimal_never_float() -> None:
    event = observed()
    assert event.data.agreement.bill_amount == Decimal("1500.5")
    assert event.data.additions[0].unit_price == Decimal("22.1")
    assert isinstance(event.data.additions[0].quantity, Decimal)


def test_envelope_is_cloudevents_structured_mode_with_subject_and_tenant_extension() -> None:
    document = json.loads(observed().to_bytes())
    assert document["specversion"] == "1.0"
    assert document["datacontenttype"] == "application/json"
    assert document["subject"] == "acme:250"
    assert document["tenantid"] == "acme"
    assert document["type"] == "psa.agreement.observed"
    UUID(document["id"])
    assert document["time"].endswith("Z")


def test_every_event_gets_a_fresh_id() -> None:
    assert observed().id != observed().id


def test_key_is_tenant_and_client_so_all_topics_are_co_partitioned() -> None:
    assert observed().key == b"acme:250" == message_key("acme", "250")


def test_envelope_subject_that_disagrees_with_the_payload_is_refused() -> None:
    raw = json.loads(observed().to_bytes())
    raw["subject"] = "acme:999"
    with pytest.raises(ValidationError, match="do not match"):
        parse(PSA_AGREEMENTS, json.dumps(raw))
    raw["subject"] = "acme:250"
    raw["tenantid"] = "other"
    with pytest.raises(ValidationError, match="do not match"):
        parse(PSA_AGREEMENTS, json.dumps(raw))


def select(**data: object) -> bytes:
    payload = {"tenant_id": "acme", "client_id": "250", "requested_by": "ui", **data}
    return SelectCommand.build(SelectData.model_validate(payload), source="ui").to_bytes()


def test_select_command_parses_from_the_commands_topic() -> None:
    command = parse(SYNC_COMMANDS, select(agreement_ids=[1, 2], addition_ids=[3]))
    assert isinstance(command, SelectCommand)
    assert command.data.agreement_ids == [1, 2]


def test_select_command_that_selects_nothing_is_refused() -> None:
    with pytest.raises(ValidationError, match="names no agreement_ids"):
        SelectData(tenant_id="acme", client_id="250", requested_by="ui")


@pytest.mark.parametrize(
    "mutation",
    [
        {"type": "sync.command.delete_everything"},
        {"data": {"tenant_id": "acme", "client_id": "250", "agreement_ids": ["x"], "requested_by": "u"}},
        {
            "data": {
                "tenant_id": "acme",
                "client_id": "250",
                "agreement_ids": [1],
                "requested_by": "u",
                "evil": 1,
            }
        },
        {"data": {"tenant_id": "ACME;drop", "client_id": "250", "agreement_ids": [1], "requested_by": "u"}},
        {"data": {"tenant_id": "acme", "client_id": "250", "agreement_ids": [-1], "requested_by": "u"}},
    ],
    ids=["unknown-type", "wrong-field-type", "unknown-field", "bad-tenant-id", "negative-id"],
)
def test_commands_are_validated_strictly(mutation: dict[str, object]) -> None:
    raw = json.loads(select(agreement_ids=[1]))
    raw.update(mutation)
    with pytest.raises(ValidationError):
        parse(SYNC_COMMANDS, json.dumps(raw))


def test_malformed_json_is_a_validation_error_not_a_crash() -> None:
    with pytest.raises(ValidationError):
        parse(SYNC_COMMANDS, b"{not json")


def test_a_topic_union_refuses_a_message_type_of_another_topic() -> None:
    with pytest.raises(ValidationError):
        parse(CONTRACT_RECORDS, select(agreement_ids=[1]))


def record(**overrides: object) -> ContractRecordData:
    fields: dict[str, object] = {
        "tenant_id": "acme",
        "client_id": "250",
        "contract_key": "cw:acme:agreement:1234",
        "source": RecordSource(kind="agreement", agreement_id=1234, psa_last_updated=NOW),
        "name": "Acme - Managed Services",
        "contract_type": "Managed Services",
        "category": "recurring",
        "status": "active",
        "billing_cost": Money(amount=Decimal("1500.50"), currency="USD"),
        "billing_cycle": "monthly",
        **overrides,
    }
    return ContractRecordData.model_validate(fields)


def test_record_money_travels_as_a_decimal_string_and_keeps_its_scale() -> None:
    event = ContractRecordMapped.build(record(), source="contract-sync/mapper", correlationid="cmd-1")
    document = json.loads(event.to_bytes())
    assert document["data"]["billing_cost"] == {"amount": "1500.50", "currency": "USD"}
    assert document["correlationid"] == "cmd-1"
    back = parse(CONTRACT_RECORDS, event.to_bytes())
    assert isinstance(back, ContractRecordMapped)
    assert back.data.billing_cost.amount == Decimal("1500.50")


def test_record_money_as_a_json_number_is_refused() -> None:
    with pytest.raises(ValidationError, match="decimal strings"):
        Money.model_validate({"amount": 1500.5, "currency": "USD"})


@pytest.mark.parametrize("key", ["cw:acme:agreement:0", "cw:other tenant:agreement:1", "acme:agreement:1"])
def test_contract_keys_follow_the_stable_pattern(key: str) -> None:
    with pytest.raises(ValidationError):
        record(contract_key=key)


def test_edit_command_carries_arbitrary_json_values_for_the_writer_to_check() -> None:
    data = EditData(
        tenant_id="acme",
        client_id="250",
        contract_id="cw:acme:agreement:1",
        changes={"notes": "renewal call booked", "tags": ["a", "b"]},
        requested_by="ui",
    )
    command = parse(SYNC_COMMANDS, EditCommand.build(data, source="ui").to_bytes())
    assert isinstance(command, EditCommand)
    assert command.data.changes["tags"] == ["a", "b"]


def test_sync_events_parse_from_the_events_topic() -> None:
    data = CommandRejectedData(
        tenant_id="acme",
        client_id="250",
        command_id="c-1",
        command_type="sync.command.select",
        reason="auto_sync_enabled",
        message="turn auto-sync off to select items by hand",
    )
    event = CommandRejected.build(data, source="contract-sync/mapper", correlationid="c-1")
    assert parse(SYNC_EVENTS, event.to_bytes()) == event


def test_every_topic_except_the_dead_letter_topic_has_a_typed_union() -> None:
    typed = {t.name for t in TOPICS if t.adapter is not None}
    assert typed == {PSA_AGREEMENTS, SYNC_COMMANDS, CONTRACT_RECORDS, SYNC_EVENTS}
    assert all(t.partitions == 6 for t in TOPICS)


def test_every_message_type_has_a_committed_json_schema_file() -> None:
    names = {p.name for p in schema_export.JSON_DIR.glob("*.json")}
    for topic in TOPICS:
        for message_type in topic.message_types:
            assert f"{message_type.model_fields['type'].default}.json" in names


def test_committed_json_schemas_match_the_models() -> None:
    assert schema_export.differences() == [], "run: python -m schemas.export"


def test_changing_a_model_without_re_exporting_is_detected(tmp_path: Path) -> None:
    schema_export.write(tmp_path)
    assert schema_export.differences(tmp_path) == []
    target = tmp_path / "sync.command.select.json"
    document = json.loads(target.read_text())
    document["properties"]["data"] = {"type": "object"}
    target.write_text(json.dumps(document))
    assert schema_export.differences(tmp_path) == ["sync.command.select.json"]


def test_messages_we_produce_validate_against_the_exported_json_schema() -> None:
    import jsonschema

    samples = {
        PSA_AGREEMENTS: observed().to_bytes(),
        SYNC_COMMANDS: select(agreement_ids=[1], addition_ids=[2]),
        CONTRACT_RECORDS: ContractRecordMapped.build(record(), source="m").to_bytes(),
    }
    for topic, raw in samples.items():
        schema = json.loads((schema_export.JSON_DIR / f"topic.{topic}.json").read_text())
        jsonschema.validate(json.loads(raw), schema)
