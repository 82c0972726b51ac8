"""Hostile input against the running services, generated with hypothesis.

Every input carries a unique marker (in its bytes, usually `requested_by`) and, when it has one,
a unique envelope `id`. After producing them all with aiokafka, the run reads `sync.deadletter.v1`
and `sync.events.v1` and checks, per input, what docs/design.md#ground-rules promises:

| category | topic | must end in the DLQ | must be answered by an event |
|---|---|---|---|
| malformed_json | commands | yes | no (no producer can be identified) |
| wrong_envelope, unknown_type, wrong_field_types, huge | commands | yes | when the bytes name a well-formed tenant and client |
| unknown_tenant (valid commands for a tenant no one configured) | commands | yes (ground rules: "unknown tenant") | yes |
| cross_tenant_edit (edit of another tenant's contract) | commands | yes | yes (`sync.edit.rejected`) |
| key_mismatch (Kafka key of one tenant, payload of another) | commands | yes | yes |
| unknown_contract edit | commands | yes | yes |
| psa_owned_edit (edit of status / billing of a synced contract) | commands | no (ownership: a rejection) | yes (`sync.edit.rejected`) |
| bad_psa_event | psa.agreements.v1 | yes | when identifiable (`sync.failed`) |
| bad_record (invalid or cross-tenant contract record) | contracts.records.v1 | yes | when identifiable |

Other tenants' contracts must not change at all (a hash of every other tenant's rows before and
after), and every service must still be alive at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from schemas.envelope import CLIENT_ID_PATTERN, TENANT_ID_PATTERN
from schemas.psa import AgreementObserved, AgreementObservedData
from schemas.topics import (
    CONTRACT_RECORDS,
    DEADLETTER,
    DLQ_REASON,
    DLQ_STAGE,
    PSA_AGREEMENTS,
    SYNC_COMMANDS,
    SYNC_EVENTS,
    TOPICS_BY_NAME,
)
from services.common.kafka import new_consumer, new_producer, read_until_end
from services.common.settings import KafkaSettings

log = logging.getLogger(__name__)

MARK = "\u00a7M\u00a7"  # replaced by the input's unique marker after generation
_TENANT_RE = re.compile(TENANT_ID_PATTERN)
_CLIENT_RE = re.compile(CLIENT_ID_PATTERN)
_POSITION_RE = re.compile(r"([A-Za-z0-9._-]+)\[(\d+)\]@(\d+)")
REJECTION_TYPES = ("sync.command.rejected", "sync.edit.rejected", "sync.failed")
BROKER_MAX_MESSAGE_BYTES = 1_048_588
"""Kafka's default `message.max.bytes`: the limit of a topic that does not set `max.message.bytes`."""
_RECORD_OVERHEAD = 1024
"""Room left under a topic's limit for the record batch, key and headers."""
BIG_CLIENT = "987654321"
"""The client of the valid maximum-size snapshot: auto-sync off and no contracts, so the snapshot is
only stored (and refused by the state changelog), never mapped into the tenant's checked contracts."""


def max_message_bytes(topic: str) -> int:
    """The largest message `topic` accepts: its `max.message.bytes` in the registry
    (`schemas.topics`), else the broker's default."""
    configured = TOPICS_BY_NAME[topic].config.get("max.message.bytes")
    return int(configured) if configured else BROKER_MAX_MESSAGE_BYTES


@dataclass
class FuzzCase:
    category: str
    topic: str
    value: bytes
    key: bytes | None = None
    event_id: str | None = None
    expect_dlq: bool = True
    expect_rejection: bool = False
    marker: str = ""
    partition: int = -1
    offset: int = -1


@dataclass(frozen=True)
class Target:
    """What the fuzz may aim at: the tenant under test, its clients and contracts, and a victim."""

    tenant: str
    clients: list[str]
    contracts: list[tuple[str, str]]
    """(client, contract key) of the tenant's contracts."""
    victim_keys: list[tuple[str, str, str]]
    """(tenant, client, contract key) of other tenants' contracts."""


# ------------------------------------------------------------------------------------------------
# Generation


def _identifiable(document: Any) -> bool:
    """The bytes name a well-formed tenant and client (so a rejection can be addressed). Restated
    from docs/design.md#ground-rules "where the producer can be identified", not imported from the services."""
    if not isinstance(document, dict):
        return False
    raw = document.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    tenant = data.get("tenant_id", document.get("tenantid"))
    client = data.get("client_id")
    subject = document.get("subject")
    if client is None and isinstance(subject, str) and ":" in subject:
        client = subject.split(":", 1)[1]
    return (
        isinstance(tenant, str)
        and isinstance(client, str)
        and bool(_TENANT_RE.match(tenant))
        and bool(_CLIENT_RE.match(client))
    )


def _envelope(tenant: str, client: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "chaos-fuzz",
        "type": kind,
        "time": "2026-11-26T09:00:00Z",
        "subject": f"{tenant}:{client}",
        "tenantid": tenant,
        "datacontenttype": "application/json",
        "data": {"tenant_id": tenant, "client_id": client, **data},
    }


def _valid_command(tenant: str, client: str, variant: int, contract: str) -> dict[str, Any]:
    if variant == 0:
        return _envelope(tenant, client, "sync.command.select", {"agreement_ids": [1], "requested_by": MARK})
    if variant == 1:
        return _envelope(
            tenant, client, "sync.command.set_auto_sync", {"enabled": True, "requested_by": MARK}
        )
    if variant == 2:
        return _envelope(tenant, client, "sync.command.refresh", {"requested_by": MARK})
    return _envelope(
        tenant,
        client,
        "contract.command.edit",
        {"contract_id": contract, "changes": {"notes": MARK}, "requested_by": MARK},
    )


_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def strategy(target: Target) -> st.SearchStrategy[FuzzCase]:
    """One hostile input of any category (the marker still to be filled in)."""
    t = target
    client = st.sampled_from(t.clients)
    contract = st.sampled_from(t.contracts)

    def doc_case(
        category: str, document: Any, topic: str = SYNC_COMMANDS, key: bytes | None = None, **expect: bool
    ) -> FuzzCase:
        identifiable = _identifiable(document)
        if key is None and identifiable:
            data = document.get("data") if isinstance(document.get("data"), dict) else {}
            tenant = data.get("tenant_id", document.get("tenantid"))
            key = f"{tenant}:{data.get('client_id') or str(document.get('subject', ':')).split(':', 1)[1]}".encode()
        event_id = (
            document.get("id") if isinstance(document, dict) and isinstance(document.get("id"), str) else None
        )
        return FuzzCase(
            category,
            topic,
            json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass"),
            key,
            event_id,
            expect_dlq=expect.get("dlq", True),
            expect_rejection=expect.get("rejection", identifiable),
        )

    malformed = st.builds(
        lambda junk, cut: FuzzCase(
            "malformed_json",
            SYNC_COMMANDS,
            (b'{"requested_by": "' + MARK.encode() + b'", ' + junk)[: max(cut, 40)],
            None,
            expect_rejection=False,
        ),
        st.binary(max_size=200),
        st.integers(min_value=40, max_value=400),
    )

    @st.composite
    def wrong_envelope(draw: st.DrawFn) -> FuzzCase:
        c = draw(client)
        document = _valid_command(t.tenant, c, draw(st.integers(0, 2)), "")
        breakage = draw(
            st.sampled_from(
                ["specversion", "no_source", "subject", "tenantid", "content", "time", "id", "data"]
            )
        )
        if breakage == "specversion":
            document["specversion"] = draw(st.sampled_from(["2.0", "0.3", "", "1"]))
        elif breakage == "no_source":
            del document["source"]
        elif breakage == "subject":
            document["subject"] = draw(
                st.sampled_from([f"{t.tenant}:other-client", f"other:{c}", "no-colon", ""])
            )
        elif breakage == "tenantid":
            document["tenantid"] = "someone-else"
        elif breakage == "content":
            document["datacontenttype"] = "text/xml"
        elif breakage == "time":
            document["time"] = draw(
                st.sampled_from(["yesterday", "2026-13-45T99:00:00Z", "2026-11-26T09:00:00"])
            )
        elif breakage == "id":
            document["id"] = f"not-a-uuid-{MARK}"
        else:
            document["data"] = draw(st.sampled_from([None, [], "data", 42]))
            document["requested_by"] = MARK
        return doc_case("wrong_envelope", document)

    @st.composite
    def unknown_type(draw: st.DrawFn) -> FuzzCase:
        document = _valid_command(t.tenant, draw(client), 2, "")
        document["type"] = draw(
            st.one_of(
                st.sampled_from(
                    ["sync.command.delete_all", "contract.command.drop", "psa.agreement.observed", ""]
                ),
                st.text(min_size=1, max_size=30),
            )
        )
        return doc_case("unknown_type", document)

    @st.composite
    def wrong_field_types(draw: st.DrawFn) -> FuzzCase:
        contract_client, contract_key = draw(contract)
        variant = draw(st.integers(0, 3))
        document = _valid_command(t.tenant, contract_client, variant, contract_key)
        data = document["data"]
        choices: dict[int, list[tuple[str, list[Any]]]] = {
            0: [
                ("agreement_ids", ["1,2", ["a"], [0], [-5], [2**40], None, {}]),
                ("addition_ids", [[1.5], "x"]),
            ],
            1: [("enabled", [None, [], {}, 2, "maybe"])],
            2: [("requested_by", [None, 7, "", "x" * 201, []])],
            3: [("changes", [[], {}, "notes=x", None, 5]), ("contract_id", [None, 5, "", "x" * 201])],
        }
        common = [
            ("tenant_id", [None, 5, "UPPER", "has space", "", [t.tenant]]),
            ("client_id", [None, 5, "", "bad client!", {"id": 1}]),
        ]
        name, values = draw(st.sampled_from(choices[variant] + common))
        data[name] = draw(
            st.one_of(
                st.sampled_from(values),
                st.integers(min_value=-(2**70), max_value=2**70).filter(
                    lambda _: name in ("tenant_id", "client_id")
                ),
            )
        )
        document["extra_marker"] = MARK
        return doc_case("wrong_field_types", document)

    @st.composite
    def huge(draw: st.DrawFn) -> FuzzCase:
        size = draw(st.integers(200_000, 900_000))
        document = _valid_command(t.tenant, draw(client), 2, "")
        document["data"]["requested_by"] = MARK + "x" * size
        return doc_case("huge", document)

    @st.composite
    def unknown_tenant(draw: st.DrawFn) -> FuzzCase:
        ghost = "ghost-" + draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=4, max_size=12))
        document = _valid_command(
            ghost,
            draw(st.sampled_from(["1", "250", "acme"])),
            draw(st.integers(0, 3)),
            f"cw:{ghost}:agreement:1",
        )
        return doc_case("unknown_tenant", document, rejection=True)

    @st.composite
    def cross_tenant_edit(draw: st.DrawFn) -> FuzzCase:
        _, _, victim_key = draw(st.sampled_from(t.victim_keys))
        contract_client, _ = draw(contract)
        document = _valid_command(t.tenant, contract_client, 3, victim_key)
        document["data"]["changes"] = draw(
            st.sampled_from([{"notes": MARK}, {"name": MARK}, {"tags": ["x"]}, {"owner": "attacker"}])
        )
        return doc_case("cross_tenant_edit", document, rejection=True)

    @st.composite
    def key_mismatch(draw: st.DrawFn) -> FuzzCase:
        victim_tenant, victim_client, victim_key = draw(st.sampled_from(t.victim_keys))
        document = _valid_command(victim_tenant, victim_client, 3, victim_key)
        key = f"{t.tenant}:{draw(client)}".encode()
        return doc_case("key_mismatch", document, key=key, rejection=True)

    @st.composite
    def unknown_contract(draw: st.DrawFn) -> FuzzCase:
        number = draw(st.integers(2_000_000_000, 2_147_483_647))
        document = _valid_command(t.tenant, draw(client), 3, f"cw:{t.tenant}:agreement:{number}")
        return doc_case("unknown_contract", document, rejection=True)

    @st.composite
    def psa_owned_edit(draw: st.DrawFn) -> FuzzCase:
        contract_client, key = draw(contract)
        changes = draw(
            st.sampled_from(
                [
                    {"status": "cancelled"},
                    {"billing_cost": {"amount": "0.00", "currency": "USD"}},
                    {"billing_cycle": "annual", "notes": MARK},
                    {"billing_amount": "1", "name": MARK},
                    {"currency": "XXX"},
                    {"billing_currency": "EUR", "tags": ["a"]},
                ]
            )
        )
        document = _valid_command(t.tenant, contract_client, 3, key)
        document["data"]["changes"] = changes
        return doc_case("psa_owned_edit", document, dlq=False, rejection=True)

    @st.composite
    def bad_psa_event(draw: st.DrawFn) -> FuzzCase:
        c = draw(client)
        agreement: dict[str, Any] = {"id": draw(st.integers(1, 2**31 - 1)), "name": MARK}
        broken = draw(st.sampled_from(["billAmount", "id", "agreementStatus", "additions", "observed_at"]))
        data: dict[str, Any] = {
            "psa": "connectwise",
            "agreement": agreement,
            "additions": [],
            "psa_last_updated": "2026-11-26T08:00:00Z",
            "observed_at": "2026-11-26T08:00:00Z",
        }
        if broken == "billAmount":
            agreement["billAmount"] = draw(st.sampled_from(["abc", [], {"x": 1}]))
        elif broken == "id":
            agreement["id"] = draw(st.sampled_from(["one", None, 1.5]))
        elif broken == "agreementStatus":
            agreement["agreementStatus"] = draw(
                st.text(min_size=1, max_size=10).filter(
                    lambda s: s not in ("Active", "Cancelled", "Expired", "Inactive")
                )
            )
        elif broken == "additions":
            data["additions"] = draw(st.sampled_from([[{"quantity": 1}], "none", [None]]))
        else:
            data["observed_at"] = draw(st.sampled_from(["now", "2026-99-99T00:00:00Z", None, []]))
        document = _envelope(t.tenant, c, "psa.agreement.observed", data)
        document["source"] = "chaos-fuzz"
        return doc_case("bad_psa_event", document, topic=PSA_AGREEMENTS)

    @st.composite
    def bad_record(draw: st.DrawFn) -> FuzzCase:
        c = draw(client)
        victim_tenant, _, _ = draw(st.sampled_from(t.victim_keys))
        broken = draw(st.sampled_from(["cross_tenant", "status", "amount", "key"]))
        number = draw(st.integers(1, 2**31 - 1))
        data: dict[str, Any] = {
            "contract_key": f"cw:{victim_tenant if broken == 'cross_tenant' else t.tenant}:agreement:{number}",
            "source": {
                "psa": "connectwise",
                "kind": "agreement",
                "agreement_id": number,
                "psa_last_updated": "2030-01-01T00:00:00Z",
            },
            "name": MARK,
            "contract_type": "x",
            "category": "recurring",
            "status": "active",
            "billing_cost": {"amount": "1.00", "currency": "USD"},
            "billing_cycle": "monthly",
        }
        if broken == "status":
            data["status"] = draw(st.sampled_from(["deleted", "", "ACTIVE"]))
        elif broken == "amount":
            data["billing_cost"] = {"amount": draw(st.sampled_from([1.5, "1e400", "abc"])), "currency": "USD"}
        elif broken == "key":
            data["contract_key"] = draw(
                st.sampled_from(["cw:x' or '1'='1:agreement:1", "", f"cw:{t.tenant}:agreement:0"])
            )
        document = _envelope(t.tenant, c, "contract.record.mapped", data)
        return doc_case("bad_record", document, topic=CONTRACT_RECORDS)

    return st.one_of(
        malformed,
        wrong_envelope(),
        unknown_type(),
        wrong_field_types(),
        unknown_tenant(),
        cross_tenant_edit(),
        key_mismatch(),
        unknown_contract(),
        psa_owned_edit(),
        bad_psa_event(),
        bad_record(),
    )


def generate(target: Target, count: int, huge: int = 10) -> list[FuzzCase]:
    """`count` inputs from hypothesis (plus `huge` payloads of 0.2-0.9 MB), each with a unique marker."""
    cases: list[FuzzCase] = []
    run_id = secrets.token_hex(3)

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy(target))
    def collect(case: FuzzCase) -> None:
        cases.append(case)

    while len(cases) < count:
        collect()
    cases = cases[:count]
    big = strategy_huge(target)
    cases.extend(big[:huge])
    cases.extend(poison_cases(target))
    for index, case in enumerate(cases):
        case.marker = f"fz{run_id}n{index:06d}z"
        case.value = case.value.replace(MARK.encode(), case.marker.encode())
        if MARK in (case.event_id or ""):
            case.event_id = (case.event_id or "").replace(MARK, case.marker)
        if case.marker.encode() not in case.value:
            case.value = case.value + case.marker.encode()  # malformed bytes cut before the marker
    return cases


def strategy_huge(target: Target) -> list[FuzzCase]:
    out = []
    for index in range(10):
        document = _valid_command(target.tenant, target.clients[index % len(target.clients)], 2, "")
        document["data"]["requested_by"] = MARK + "x" * (200_000 + 70_000 * index)
        out.append(
            FuzzCase(
                "huge",
                SYNC_COMMANDS,
                json.dumps(document, ensure_ascii=False).encode(),
                document["subject"].encode(),
                document["id"],
                expect_rejection=True,
            )
        )
    return out


def poison_cases(target: Target) -> list[FuzzCase]:
    """One input per class of poison message, sent to every input topic: JSON nested 4,000 and
    100,000 deep, values up to each topic's maximum message size (`max_message_bytes`: 4 MiB on
    psa.agreements.v1, also as a valid snapshot), invalid UTF-8, `1e999999`, duplicate keys (the
    last wins in every parser: here it names another tenant), null and mismatched Kafka keys. Each
    must be dead-lettered, and answered whenever its tenant and client can be read (all but the
    nested values and invalid UTF-8, which no parser reads), while every service lives."""
    # ensure_ascii=False: the marker placeholder stays literal, so `generate` substitutes it in place
    # (escaped, it would be appended after the JSON and every case would be just malformed JSON)
    tenant, client = target.tenant, target.clients[0]
    key = f"{tenant}:{client}".encode()
    out: list[FuzzCase] = []
    for topic in (SYNC_COMMANDS, PSA_AGREEMENTS, CONTRACT_RECORDS):
        for depth in (4_000, 100_000):
            value = b'{"marker":"' + MARK.encode() + b'","data":' + b"[" * depth + b"]" * depth + b"}"
            out.append(FuzzCase(f"nested_{depth}", topic, value, key))
        document = _envelope(
            tenant, client, "sync.command.select", {"agreement_ids": [1], "requested_by": MARK}
        )
        document["data"]["filler"] = ""
        room = (
            max_message_bytes(topic)
            - _RECORD_OVERHEAD
            - len(json.dumps(document, ensure_ascii=False).encode())
        )
        document["data"]["filler"] = "x" * room
        # a command names its sender: answered like any other readable command
        answered = topic == SYNC_COMMANDS
        out.append(
            FuzzCase(
                "max_size",
                topic,
                json.dumps(document, ensure_ascii=False).encode(),
                key,
                document["id"],
                expect_rejection=answered,
            )
        )
    out.append(_max_size_snapshot(tenant))
    select = _valid_command(tenant, client, 0, "")
    raw = json.dumps(select, ensure_ascii=False).encode()
    out.append(
        FuzzCase(
            "invalid_utf8",
            SYNC_COMMANDS,
            raw.replace(b'"requested_by": "', b'"requested_by": "\xff', 1),
            key,
        )
    )
    # readable commands of a configured tenant: each names its tenant, client and id, so besides
    # the dead letter its sender gets a `sync.command.rejected` (matched by the command id)
    huge_number = json.dumps(select, ensure_ascii=False).replace(
        '"agreement_ids": [1]', '"agreement_ids": [1e999999]'
    )
    out.append(
        FuzzCase("huge_number", SYNC_COMMANDS, huge_number.encode(), key, select["id"], expect_rejection=True)
    )
    duplicate = _valid_command(tenant, client, 0, "")
    text = json.dumps(duplicate, ensure_ascii=False).replace(
        f'"tenantid": "{tenant}"', f'"tenantid": "{tenant}", "tenantid": "ghost-dup"', 1
    )
    out.append(
        FuzzCase("duplicate_keys", SYNC_COMMANDS, text.encode(), key, duplicate["id"], expect_rejection=True)
    )
    for kind, routed in (("null_key", None), ("mismatched_key", b"ghost:1")):
        command = _valid_command(tenant, client, 0, "")
        out.append(
            FuzzCase(
                kind,
                SYNC_COMMANDS,
                json.dumps(command, ensure_ascii=False).encode(),
                routed,
                command["id"],
                expect_rejection=True,
            )
        )
    return out


def _max_size_snapshot(tenant: str) -> FuzzCase:
    """A valid `psa.agreement.observed` as large as its topic accepts (4 MiB: the bulk in a
    ConnectWise field the mapping does not read). The topic takes it, the mapper's state changelog
    (the broker's default limit) cannot: dead-lettered `too_large` and answered with `sync.failed`
    (matched by its position), while every service goes on."""
    data = AgreementObservedData.model_validate(
        {
            "tenant_id": tenant,
            "client_id": BIG_CLIENT,
            "agreement": {
                "id": 2_000_000_001,
                "name": MARK,
                "company": {"id": int(BIG_CLIENT), "identifier": "Big", "name": "Big"},
                "billingCycle": {"id": 2, "name": "Monthly"},
                "billAmount": 1,
                "customFields": [{"id": 1, "value": ""}],
            },
            "additions": [],
            "psa_last_updated": "2026-11-26T08:00:00Z",
            "observed_at": "2026-11-26T08:00:00Z",
            "time_zone": "UTC",
            "default_currency": "USD",
        }
    )
    bare = AgreementObserved.build(data, source="chaos-fuzz").to_bytes()
    room = max_message_bytes(PSA_AGREEMENTS) - _RECORD_OVERHEAD - len(bare)
    value = bare.replace(b'"value":""', b'"value":"' + b"x" * room + b'"', 1)
    return FuzzCase(
        "max_size_snapshot",
        PSA_AGREEMENTS,
        value,
        f"{tenant}:{BIG_CLIENT}".encode(),
        expect_rejection=True,
    )


# ------------------------------------------------------------------------------------------------
# Producing, observing, judging


async def produce(kafka: KafkaSettings, cases: list[FuzzCase], prefix: str = "") -> None:
    """Send every case (all in flight at once, chunked) and record its partition and offset."""
    producer = new_producer(kafka, max_request_size=8 * 1024 * 1024, linger_ms=20)
    await producer.start()
    try:
        for start in range(0, len(cases), 2000):
            chunk = cases[start : start + 2000]
            futures = [await producer.send(prefix + c.topic, c.value, key=c.key) for c in chunk]
            for case, metadata in zip(chunk, await asyncio.gather(*futures), strict=True):
                case.partition, case.offset = metadata.partition, metadata.offset
    finally:
        await producer.stop()


async def _read_all(kafka: KafkaSettings, topic: str) -> list[Any]:
    consumer = new_consumer(kafka, topic, group_id=None, max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    records: list[Any] = []
    try:
        for _ in range(200):
            if consumer.assignment():
                break
            await asyncio.sleep(0.05)
        partitions = list(consumer.assignment())
        await consumer.seek_to_beginning(*partitions)
        records.extend([record async for record in read_until_end(consumer, partitions)])
    finally:
        await consumer.stop()
    return records


@dataclass
class FuzzReport:
    inputs: int
    dlq_records: int = 0
    dlq_inputs: int = 0
    rejections: int = 0
    by_category: Counter[str] = field(default_factory=Counter)
    missing_dlq: Counter[str] = field(default_factory=Counter)
    missing_rejection: Counter[str] = field(default_factory=Counter)
    dlq_without_reason: int = 0
    examples: list[str] = field(default_factory=list)
    ghost_rows: int | None = None
    """`client_sync_settings` rows the unknown_tenant commands left (docs/design.md#ground-rules: nothing is
    applied for a tenant nobody configured); None until `ghost_settings_rows` was run."""

    def problems(self) -> list[str]:
        out = [
            f"{n} {c} inputs never reached the dead-letter topic" for c, n in sorted(self.missing_dlq.items())
        ]
        out += [f"{n} {c} inputs got no rejection event" for c, n in sorted(self.missing_rejection.items())]
        if self.dlq_without_reason:
            out.append(f"{self.dlq_without_reason} dead-letter records without reason/stage headers")
        if self.ghost_rows:
            out.append(f"{self.ghost_rows} client_sync_settings rows stored for unknown tenants")
        return out


def judge(
    cases: list[FuzzCase], dead_letters: list[Any], events: list[dict[str, Any]], prefix: str = ""
) -> FuzzReport:
    """Per input: in the DLQ (by marker, with reason and stage headers)? answered by an event? (pure)."""
    report = FuzzReport(len(cases))
    by_marker = {case.marker: case for case in cases}
    marker_re = re.compile(rb"fz[0-9a-f]{6}n\d{6}z")
    seen: set[str] = set()
    for record in dead_letters:
        found = {m.decode() for m in marker_re.findall(record.value or b"")} & by_marker.keys()
        if not found:
            continue
        report.dlq_records += 1
        headers = dict(record.headers or [])
        if not headers.get(DLQ_REASON) or not headers.get(DLQ_STAGE):
            report.dlq_without_reason += 1
        seen |= found
    report.dlq_inputs = len(seen)
    ids: set[str] = set()
    positions: set[tuple[str, int, int]] = set()
    for event in events:
        if event.get("type") not in REJECTION_TYPES:
            continue
        data = event.get("data", {})
        for value in (data.get("command_id"), event.get("correlationid")):
            if value:
                ids.add(str(value))
        for topic, partition, offset in _POSITION_RE.findall(str(data.get("message", ""))):
            positions.add((topic, int(partition), int(offset)))
    for case in cases:
        report.by_category[case.category] += 1
        answered = (case.event_id is not None and case.event_id[:200] in ids) or (
            (prefix + case.topic, case.partition, case.offset) in positions
        )
        if answered:
            report.rejections += 1
        if case.expect_dlq and case.marker not in seen:
            report.missing_dlq[case.category] += 1
            if len(report.examples) < 12:
                report.examples.append(f"no DLQ: {case.category} {case.value[:160]!r}")
        if case.expect_rejection and not answered:
            report.missing_rejection[case.category] += 1
            if len(report.examples) < 24:
                report.examples.append(f"no rejection: {case.category} {case.value[:160]!r}")
    return report


def ghost_settings_rows(engine: sa.Engine, cases: list[FuzzCase]) -> int:
    """Rows of `client_sync_settings` written by this run's unknown_tenant commands (found by the
    input's unique marker, stored as `auto_sync_requested_by`)."""
    markers = [case.marker for case in cases if case.category == "unknown_tenant"]
    if not markers:
        return 0
    with engine.connect() as connection:
        count = connection.execute(
            sa.text("SELECT count(*) FROM client_sync_settings WHERE auto_sync_requested_by = ANY(:m)"),
            {"m": markers},
        ).scalar_one()
    return int(count)


def tenants_digest(engine: sa.Engine, tenants: list[str]) -> tuple[int, str]:
    """(contract rows, SHA-256 of every contract row and catalog item of `tenants`)."""
    digest = hashlib.sha256()
    rows = 0
    with engine.connect() as connection:
        for table in ("contracts", "catalog_items"):
            result = connection.execute(
                sa.text(f"SELECT * FROM {table} WHERE tenant_id = ANY(:t) ORDER BY contract_key"),  # noqa: S608
                {"t": tenants},
            )
            for row in result:
                digest.update(repr(tuple(row)).encode())
                rows += table == "contracts"
    return rows, digest.hexdigest()


def run_fuzz(
    kafka: KafkaSettings,
    target: Target,
    count: int,
    *,
    prefix: str = "",
    settle: Callable[[list[FuzzCase]], None] | None = None,
    timeout_s: float = 300.0,
    quiet_s: float = 30.0,
) -> tuple[FuzzReport, list[FuzzCase]]:
    """Generate, produce, wait until every expected dead letter arrived (or the timeout), judge."""
    started = time.monotonic()
    cases = generate(target, count)
    log.info("fuzz: %d inputs generated in %.1f s", len(cases), time.monotonic() - started)
    asyncio.run(produce(kafka, cases, prefix))
    log.info("fuzz: produced in %.1f s", time.monotonic() - started)
    deadline = time.monotonic() + timeout_s
    last: list[str] | None = None
    stable_since = time.monotonic()
    while True:
        dead = asyncio.run(_read_all(kafka, prefix + DEADLETTER))
        events = [json.loads(r.value) for r in asyncio.run(_read_all(kafka, prefix + SYNC_EVENTS)) if r.value]
        report = judge(cases, dead, events, prefix)
        problems = report.problems()
        if problems != last:
            last, stable_since = problems, time.monotonic()
        # done when all is answered, or nothing moved for `quiet_s` (what is missing stays missing)
        if not problems or time.monotonic() > deadline or time.monotonic() - stable_since > quiet_s:
            break
        log.info("fuzz: waiting: %s", "; ".join(problems))
        time.sleep(3)
    if settle is not None:
        settle(cases)
    return report, cases
