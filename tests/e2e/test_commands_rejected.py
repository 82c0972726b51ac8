"""Commands the pipeline must refuse: the reason reaches the producer as `sync.command.rejected`,
bad bytes land in `sync.deadletter.v1` with their reason, nothing is changed, and every service keeps
running. Uses the third seeded company and a company created for this module.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from e2e_support import E2E, REQUESTED_BY, TailRecord, kafka_client

from schemas.topics import (
    DLQ_ERROR,
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
    DLQ_STAGE,
    SYNC_COMMANDS,
)


@pytest.fixture(scope="module")
def manual_client(e2e: E2E) -> str:
    """The third seeded company, auto-sync off, fully observed (by the poller's first full poll)."""
    client = str(e2e.pipeline.psa_companies()[2]["id"])
    agreements = e2e.pipeline.psa_agreements(int(client))
    keys = {e2e.agreement_key(a["id"]) for a in agreements}
    e2e.wait_for(f"client {client} observed", lambda: keys <= set(e2e.catalog(client)))
    return client


@pytest.fixture(scope="module")
def auto_client(e2e: E2E) -> tuple[str, int]:
    """A company created for this module, with one agreement, auto-sync on and applied."""
    company = e2e.pipeline.control.add_company(name=f"Auto {e2e.tenant}")
    client = str(company["id"])
    agreement = e2e.pipeline.control.create_agreement(
        company["id"], type="Managed Services", billAmount=10, billingCycle="Monthly"
    )
    e2e.refresh(client)
    key = e2e.agreement_key(agreement["id"])
    e2e.wait_for(f"{key} observed", lambda: key in e2e.catalog(client))
    command_id = e2e.set_auto_sync(client, True)
    e2e.wait_event("auto-sync on", "sync.auto_sync.changed", correlationid=command_id)
    e2e.wait_for(f"{key} applied by auto-sync", lambda: e2e.contract(key))
    return client, agreement["id"]


def publish_raw(e2e: E2E, key: bytes, value: bytes) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(**kafka_client(e2e), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(e2e.pipeline.topic(SYNC_COMMANDS), value=value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


def test_select_while_auto_sync_is_on_is_rejected_with_auto_sync_enabled(
    e2e: E2E, auto_client: tuple[str, int]
) -> None:
    client, agreement_id = auto_client
    key = e2e.agreement_key(agreement_id)
    before = e2e.contract(key)
    command_id = e2e.select(client, [agreement_id], [])
    rejected = e2e.wait_event("the rejection", "sync.command.rejected", correlationid=command_id)
    assert rejected["data"]["reason"] == "auto_sync_enabled"
    assert rejected["data"]["command_id"] == command_id
    assert rejected["data"]["command_type"] == "sync.command.select"
    assert rejected["data"]["agreement_ids"] == [agreement_id]
    assert rejected["subject"] == f"{e2e.tenant}:{client}"
    time.sleep(1.0)
    assert not e2e.events("sync.contracts.applied", correlationid=command_id)
    assert e2e.contract(key) == before


def test_select_of_ids_never_seen_is_rejected_as_not_in_catalog_while_known_ids_still_apply(
    e2e: E2E, manual_client: str
) -> None:
    known = e2e.pipeline.psa_agreements(int(manual_client))[0]["id"]
    unknown_agreement, unknown_addition = 987_654_321, 876_543_210
    command_id = e2e.select(manual_client, [unknown_agreement, known], [unknown_addition])
    e2e.wait_for(
        "two rejections", lambda: len(e2e.events("sync.command.rejected", correlationid=command_id)) >= 2
    )
    rejections = e2e.events("sync.command.rejected", correlationid=command_id)
    named = {(tuple(r["data"]["agreement_ids"]), tuple(r["data"]["addition_ids"])) for r in rejections}
    assert named == {((unknown_agreement,), ()), ((), (unknown_addition,))}
    assert {r["data"]["reason"] for r in rejections} == {"not_in_catalog"}
    e2e.wait_applied(command_id, 1)
    contracts = e2e.contracts(manual_client)
    assert set(contracts) == {e2e.agreement_key(known)}
    assert not any(str(unknown_agreement) in key or str(unknown_addition) in key for key in contracts)


def test_a_malformed_command_is_dead_lettered_and_rejected_and_every_service_keeps_running(
    e2e: E2E, manual_client: str
) -> None:
    command_id = str(uuid.uuid4())
    subject = f"{e2e.tenant}:{manual_client}"
    # a well-formed envelope whose data fails validation (a select naming nothing)
    invalid = {
        "specversion": "1.0",
        "id": command_id,
        "source": "e2e-tests",
        "type": "sync.command.select",
        "subject": subject,
        "tenantid": e2e.tenant,
        "datacontenttype": "application/json",
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "data": {
            "tenant_id": e2e.tenant,
            "client_id": manual_client,
            "agreement_ids": [],
            "addition_ids": [],
            "requested_by": REQUESTED_BY,
        },
    }
    invalid_bytes = json.dumps(invalid).encode()
    garbage = b"{not json at all " + e2e.tenant.encode()
    publish_raw(e2e, subject.encode(), invalid_bytes)
    publish_raw(e2e, subject.encode(), garbage)

    rejected = e2e.wait_event("the rejection", "sync.command.rejected", correlationid=command_id)
    assert rejected["data"]["reason"] == "malformed"
    assert rejected["data"]["command_id"] == command_id

    def both_dead_letters() -> list[TailRecord] | None:
        found = e2e.deadletters()
        return found if {invalid_bytes, garbage} <= {r.value for r in found} else None

    letters = e2e.wait_for("both dead letters", both_dead_letters)
    for letter in (r for r in letters if r.value in (invalid_bytes, garbage)):
        assert letter.key == subject.encode()
        assert letter.headers[DLQ_SOURCE_TOPIC] == e2e.pipeline.topic(SYNC_COMMANDS).encode()
        assert letter.headers[DLQ_REASON]
        assert letter.headers[DLQ_STAGE]
        assert int(letter.headers[DLQ_SOURCE_PARTITION]) >= 0
        assert int(letter.headers[DLQ_SOURCE_OFFSET]) >= 0

    # nothing changed, and the services still work: a valid command after the bad ones applies
    assert e2e.pipeline.alive() == dict.fromkeys(e2e.pipeline.alive(), True)
    agreements = e2e.pipeline.psa_agreements(int(manual_client))
    target = agreements[-1]["id"]
    follow_up = e2e.select(manual_client, [target], [])
    e2e.wait_applied(follow_up, 1)
    assert e2e.contract(e2e.agreement_key(target)) is not None
    assert all(e2e.pipeline.alive().values()), e2e.pipeline.alive()


def command_document(e2e: E2E, client: str, command_type: str, **data: object) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "e2e-tests",
        "type": command_type,
        "subject": f"{e2e.tenant}:{client}",
        "tenantid": e2e.tenant,
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "data": {"tenant_id": e2e.tenant, "client_id": client, "requested_by": REQUESTED_BY, **data},
    }


def test_a_command_with_a_numeric_client_id_is_answered_malformed_naming_the_field_and_dead_lettered(
    e2e: E2E, manual_client: str
) -> None:
    document = command_document(e2e, manual_client, "sync.command.select", agreement_ids=[1])
    document["data"]["client_id"] = int(manual_client)  # type: ignore[index]
    value = json.dumps(document).encode()
    publish_raw(e2e, f"{e2e.tenant}:{manual_client}".encode(), value)
    rejected = e2e.wait_event("the rejection", "sync.command.rejected", correlationid=document["id"])
    assert rejected["data"]["reason"] == "malformed"
    assert rejected["data"]["error_paths"] == ["data.client_id"]
    assert rejected["data"]["command_id"] == document["id"]
    assert rejected["subject"] == f"{e2e.tenant}:{manual_client}"
    letter = e2e.wait_for("its dead letter", lambda: [r for r in e2e.deadletters() if r.value == value])[0]
    assert letter.headers[DLQ_REASON] == b"validation_error"


def test_a_command_without_an_id_is_dead_lettered_and_never_applied(e2e: E2E, manual_client: str) -> None:
    agreements = e2e.pipeline.psa_agreements(int(manual_client))
    unsynced = [a["id"] for a in agreements if e2e.contract(e2e.agreement_key(a["id"])) is None]
    assert unsynced, "the manual client has an agreement without a contract"
    target = unsynced[0]
    document = command_document(e2e, manual_client, "sync.command.select", agreement_ids=[target])
    del document["id"]
    value = json.dumps(document).encode()
    publish_raw(e2e, f"{e2e.tenant}:{manual_client}".encode(), value)
    letter = e2e.wait_for("its dead letter", lambda: [r for r in e2e.deadletters() if r.value == value])[0]
    assert letter.headers[DLQ_REASON] == b"validation_error"
    assert b"id" in letter.headers[DLQ_ERROR]
    rejected = e2e.wait_for(
        "the rejection naming `id`",
        lambda: [
            r
            for r in e2e.events("sync.command.rejected", subject=f"{e2e.tenant}:{manual_client}")
            if r["data"].get("error_paths") == ["id"]
        ],
    )
    assert rejected[-1]["data"]["reason"] == "malformed"
    assert rejected[-1]["data"]["command_id"] == "unknown"
    time.sleep(1.0)
    assert e2e.contract(e2e.agreement_key(target)) is None


def test_an_edit_naming_another_clients_contract_is_rejected_as_cross_tenant_and_changes_nothing(
    e2e: E2E, auto_client: tuple[str, int], manual_client: str
) -> None:
    owner, agreement_id = auto_client
    key = e2e.agreement_key(agreement_id)
    before = e2e.contract(key)
    assert before is not None and before["client_id"] == owner != manual_client
    command_id = e2e.edit(manual_client, key, {"notes": "written through the wrong client"})
    rejected = e2e.wait_event("the rejection", "sync.edit.rejected", correlationid=command_id)
    assert rejected["data"]["reason"] == "cross_tenant"
    assert rejected["data"]["contract_id"] == key
    assert rejected["subject"] == f"{e2e.tenant}:{manual_client}"
    time.sleep(1.0)
    assert e2e.contract(key) == before
