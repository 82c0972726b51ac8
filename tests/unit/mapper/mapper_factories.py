"""Builders of ConnectWise snapshots and wire messages for the mapper's tests.

`cw_agreement(**overrides)` / `cw_addition(**overrides)` return ConnectWise JSON (camelCase, as the
poller forwards it); `observed(...)` wraps them into a validated `psa.agreement.observed` event.
Overrides set to `None` delete the key (ConnectWise omits nulls).
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from schemas.commands import SelectCommand, SelectData, SetAutoSyncCommand, SetAutoSyncData
from schemas.psa import (
    AdditionRemoved,
    AdditionRemovedData,
    AgreementObserved,
    AgreementObservedData,
    AgreementRemoved,
    AgreementRemovedData,
    RemovalEvidence,
)

TENANT = "acme"
CLIENT = "250"
_ids = itertools.count(10_000)


def next_id() -> int:
    return next(_ids)


def _apply(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def cw_agreement(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 1234,
        "name": "Acme - Managed Services",
        "type": {"id": 5, "name": "Managed Services"},
        "company": {"id": 250, "identifier": "AcmeCorp", "name": "Acme Corporation"},
        "startDate": "2024-01-01T00:00:00Z",
        "endDate": "2026-12-31T00:00:00Z",
        "noEndingDateFlag": False,
        "cancelledFlag": False,
        "billingCycle": {"id": 2, "name": "Monthly"},
        "billOneTimeFlag": False,
        "billAmount": 1500.0,
        "currency": {"id": 7, "currencyCode": "USD", "name": "US Dollars"},
        "agreementStatus": "Active",
        "invoiceDescription": "Managed services for Acme",
        "_info": {"lastUpdated": "2025-03-14T16:02:11Z", "updatedBy": "jsmith"},
        "customFields": [{"id": 12, "caption": "Contract Ref", "value": "C-2024-017"}],
    }
    return _apply(base, overrides)


def cw_addition(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 5678,
        "product": {"id": 301, "identifier": "M365-BP"},
        "quantity": 25.0,
        "lessIncluded": 0.0,
        "unitPrice": 22.0,
        "unitCost": 18.5,
        "billCustomer": "Billable",
        "effectiveDate": "2024-01-01T00:00:00Z",
        "agreementId": 1234,
        "description": "Microsoft 365 Business Premium",
        "agreementStatus": "Active",
        "_info": {"lastUpdated": "2025-03-10T09:15:42Z", "updatedBy": "jsmith"},
    }
    return _apply(base, overrides)


def observed_data(
    agreement: dict[str, Any] | None = None,
    additions: list[dict[str, Any]] | None = None,
    *,
    observed_at: str = "2025-06-01T12:00:00Z",
    psa_last_updated: str = "2025-03-14T16:02:11Z",
    time_zone: str = "UTC",
    default_currency: str = "USD",
    tenant: str = TENANT,
    client: str = CLIENT,
) -> AgreementObservedData:
    return AgreementObservedData.model_validate(
        {
            "tenant_id": tenant,
            "client_id": client,
            "agreement": agreement if agreement is not None else cw_agreement(),
            "additions": additions if additions is not None else [],
            "psa_last_updated": psa_last_updated,
            "observed_at": observed_at,
            "time_zone": time_zone,
            "default_currency": default_currency,
        }
    )


def observed(*args: Any, **kwargs: Any) -> AgreementObserved:
    return AgreementObserved.build(observed_data(*args, **kwargs), source="contract-sync/poller")


def snapshot(
    agreement_id: int,
    addition_ids: list[int],
    *,
    version: str = "2025-03-14T16:02:11Z",
    tenant: str = TENANT,
    client: str = CLIENT,
    **agreement_overrides: Any,
) -> AgreementObserved:
    """An observed agreement `agreement_id` with Billable additions `addition_ids`."""
    return observed(
        cw_agreement(id=agreement_id, **agreement_overrides),
        [cw_addition(id=a, agreementId=agreement_id) for a in addition_ids],
        psa_last_updated=version,
        tenant=tenant,
        client=client,
    )


def select(
    agreement_ids: list[int] = (),  # type: ignore[assignment]
    addition_ids: list[int] = (),  # type: ignore[assignment]
    *,
    tenant: str = TENANT,
    client: str = CLIENT,
) -> SelectCommand:
    return SelectCommand.build(
        SelectData(
            tenant_id=tenant,
            client_id=client,
            agreement_ids=list(agreement_ids),
            addition_ids=list(addition_ids),
            requested_by="ui:jane",
        ),
        source="contract-sync/ui",
    )


def set_auto_sync(enabled: bool, *, tenant: str = TENANT, client: str = CLIENT) -> SetAutoSyncCommand:
    return SetAutoSyncCommand.build(
        SetAutoSyncData(tenant_id=tenant, client_id=client, enabled=enabled, requested_by="ui:jane"),
        source="contract-sync/ui",
    )


def agreement_removed(agreement_id: int, *, tenant: str = TENANT, client: str = CLIENT) -> AgreementRemoved:
    return AgreementRemoved.build(
        AgreementRemovedData(
            tenant_id=tenant,
            client_id=client,
            agreement_id=agreement_id,
            observed_at=datetime.fromisoformat("2025-06-02T08:00:00+00:00"),
            evidence=RemovalEvidence(method="direct_get_404", detail=f"/finance/agreements/{agreement_id}"),
        ),
        source="contract-sync/poller",
    )


def addition_removed(
    agreement_id: int, addition_id: int, *, tenant: str = TENANT, client: str = CLIENT
) -> AdditionRemoved:
    return AdditionRemoved.build(
        AdditionRemovedData(
            tenant_id=tenant,
            client_id=client,
            agreement_id=agreement_id,
            addition_id=addition_id,
            observed_at=datetime.fromisoformat("2025-06-02T08:00:00+00:00"),
            evidence=RemovalEvidence(method="deleted_callback"),
        ),
        source="contract-sync/poller",
    )
