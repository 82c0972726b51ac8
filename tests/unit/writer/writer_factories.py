"""Factories of the messages the writer consumes (valid by construction; override what a test needs)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from schemas import (
    AdditionRemoved,
    AdditionRemovedData,
    AgreementObserved,
    AgreementObservedData,
    AgreementRemoved,
    AgreementRemovedData,
    ContractRecordData,
    ContractRecordMapped,
    ContractRecordRetired,
    ContractRetiredData,
    CwAddition,
    CwAgreement,
    EditCommand,
    EditData,
    Money,
    RecordSource,
    RemovalEvidence,
    RetiredSource,
    SetAutoSyncCommand,
    SetAutoSyncData,
)
from services.writer.handlers import Incoming

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def unique_tenant(prefix: str = "w") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def at(minutes: int) -> datetime:
    """A PSA version `minutes` after T0."""
    return T0 + timedelta(minutes=minutes)


def make_record(
    tenant: str,
    client: str = "100",
    agreement_id: int = 1,
    *,
    addition_id: int | None = None,
    version: datetime = T0,
    status: str = "active",
    amount: str = "1500.00",
    currency: str = "USD",
    billing_cycle: str = "monthly",
    name: str | None = None,
    contract_type: str = "Managed Services",
    start_date: date | None = date(2026, 1, 1),
    end_date: date | None = None,
    description: str | None = "Managed services",
    correlationid: str | None = None,
    psa_digest: str | None = None,
    **extra: Any,
) -> ContractRecordMapped:
    kind = "addition" if addition_id is not None else "agreement"
    item = addition_id if addition_id is not None else agreement_id
    data = ContractRecordData(
        tenant_id=tenant,
        client_id=client,
        contract_key=f"cw:{tenant}:{kind}:{item}",
        source=RecordSource(
            kind=kind,
            agreement_id=agreement_id,
            addition_id=addition_id,
            psa_last_updated=version,
            psa_digest=psa_digest,
        ),
        parent_contract_key=f"cw:{tenant}:agreement:{agreement_id}" if addition_id is not None else None,
        name=name or f"{kind.title()} {item}",
        contract_type=contract_type,
        category="recurring",
        status=status,  # type: ignore[arg-type]
        billing_cost=Money(amount=Decimal(amount), currency=currency),
        billing_cycle=billing_cycle,  # type: ignore[arg-type]
        start_date=start_date,
        end_date=end_date,
        description=description,
        explanation={"status": f"agreementStatus -> {status}"},
        **extra,
    )
    return ContractRecordMapped.build(data, source="contract-sync/mapper", correlationid=correlationid)


def make_retired(tenant: str, client: str = "100", agreement_id: int = 1, *, addition_id: int | None = None,
                 observed_at: datetime = T0) -> ContractRecordRetired:  # fmt: skip
    kind = "addition" if addition_id is not None else "agreement"
    item = addition_id if addition_id is not None else agreement_id
    data = ContractRetiredData(
        tenant_id=tenant,
        client_id=client,
        contract_key=f"cw:{tenant}:{kind}:{item}",
        source=RetiredSource(kind=kind, agreement_id=agreement_id, addition_id=addition_id),
        observed_at=observed_at,
        evidence="GET /finance/agreements/1 answered 404",
    )
    return ContractRecordRetired.build(data, source="contract-sync/mapper")


def make_observed(
    tenant: str,
    client: str = "100",
    agreement_id: int = 1,
    *,
    version: datetime = T0,
    additions: dict[int, datetime] | None = None,
    observed_at: datetime | None = None,
    name: str | None = None,
) -> AgreementObserved:
    """An observed snapshot; `additions` maps addition id -> its `_info.lastUpdated`."""
    adds = additions or {}
    newest = max([version, *adds.values()])
    agreement = CwAgreement.model_validate(
        {
            "id": agreement_id,
            "name": name or f"Agreement {agreement_id}",
            "type": {"id": 1, "name": "Managed Services"},
            "company": {"id": int(client) if client.isdigit() else 1, "identifier": f"C{client}"},
            "agreementStatus": "Active",
            "billAmount": 1500.0,
            "billingCycle": {"id": 1, "name": "Monthly"},
            "startDate": "2026-01-01T00:00:00Z",
            "_info": {"lastUpdated": version.strftime("%Y-%m-%dT%H:%M:%SZ")},
        }
    )
    cw_additions = [
        CwAddition.model_validate(
            {
                "id": addition_id,
                "product": {"id": 7, "identifier": f"PROD-{addition_id}"},
                "quantity": 10,
                "lessIncluded": 0,
                "unitPrice": 12.5,
                "billCustomer": "Billable",
                "agreementId": agreement_id,
                "_info": {"lastUpdated": updated.strftime("%Y-%m-%dT%H:%M:%SZ")},
            }
        )
        for addition_id, updated in adds.items()
    ]
    data = AgreementObservedData(
        tenant_id=tenant,
        client_id=client,
        agreement=agreement,
        additions=cw_additions,
        psa_last_updated=newest,
        observed_at=observed_at or newest + timedelta(minutes=1),
    )
    return AgreementObserved.build(data, source="contract-sync/poller")


def make_agreement_removed(tenant: str, client: str = "100", agreement_id: int = 1, *,
                           observed_at: datetime = T0) -> AgreementRemoved:  # fmt: skip
    return AgreementRemoved.build(
        AgreementRemovedData(
            tenant_id=tenant,
            client_id=client,
            agreement_id=agreement_id,
            observed_at=observed_at,
            evidence=RemovalEvidence(method="direct_get_404", detail=f"/finance/agreements/{agreement_id}"),
        ),
        source="contract-sync/poller",
    )


def make_addition_removed(tenant: str, client: str, agreement_id: int, addition_id: int, *,
                          observed_at: datetime = T0) -> AdditionRemoved:  # fmt: skip
    return AdditionRemoved.build(
        AdditionRemovedData(
            tenant_id=tenant,
            client_id=client,
            agreement_id=agreement_id,
            addition_id=addition_id,
            observed_at=observed_at,
            evidence=RemovalEvidence(method="direct_get_404"),
        ),
        source="contract-sync/poller",
    )


def make_edit(tenant: str, client: str, contract_id: str, changes: dict[str, Any]) -> EditCommand:
    return EditCommand.build(
        EditData(
            tenant_id=tenant, client_id=client, contract_id=contract_id, changes=changes, requested_by="test"
        ),
        source="contract-sync/ui",
    )


def make_set_auto_sync(
    tenant: str, client: str, enabled: bool, *, time: datetime | None = None
) -> SetAutoSyncCommand:
    command = SetAutoSyncCommand.build(
        SetAutoSyncData(tenant_id=tenant, client_id=client, enabled=enabled, requested_by="test"),
        source="contract-sync/ui",
    )
    return command.model_copy(update={"time": time}) if time is not None else command


_OFFSETS: dict[str, int] = {}


def _subject_key(raw: bytes) -> bytes:
    """The key a well-behaved producer gives raw bytes: their CloudEvent subject, when readable."""
    try:
        subject = json.loads(raw).get("subject")
    except (ValueError, AttributeError):
        return b"x:1"
    return subject.encode() if isinstance(subject, str) else b"x:1"


def as_incoming(
    event: Any, topic: str, *, partition: int = 0, value: bytes | None = None, key: bytes | None = None
) -> Incoming:
    """Wrap an event (or raw bytes) as a consumed message at the next offset of `topic`, keyed as
    its producer would key it (the subject) unless `key` says otherwise."""
    offset = _OFFSETS.get(topic, 0)
    _OFFSETS[topic] = offset + 1
    raw = value if value is not None else event.to_bytes()
    if key is None:
        key = event.key if event is not None else _subject_key(raw)
    return Incoming(topic=topic, partition=partition, offset=offset, key=key, value=raw)
