"""PSA events on `psa.agreements.v1`, produced by the poller (docs/design.md#psa-events)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.connectwise import CwAddition, CwAgreement
from schemas.envelope import CloudEvent, Payload, UtcDatetime, WireModel

PsaName = Literal["connectwise"]


class AgreementObservedData(Payload):
    """A full snapshot of one agreement and all its additions, as ConnectWise returned them."""

    psa: PsaName = "connectwise"
    agreement: CwAgreement
    additions: list[CwAddition] = Field(default_factory=list)
    psa_last_updated: UtcDatetime = Field(
        description="Newest `_info.lastUpdated` of the agreement and its additions: the snapshot's version"
    )
    observed_at: UtcDatetime = Field(description="When the poller read the snapshot; 'today' for the mapping")
    time_zone: str = Field(
        default="UTC", description="The tenant's IANA time zone, in which 'today' is taken for status rules"
    )
    default_currency: str = Field(
        default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code used when ConnectWise names none"
    )


class RemovalEvidence(WireModel):
    """How a removal was confirmed: never inferred from absence or an empty answer."""

    method: Literal["direct_get_404", "deleted_callback"]
    detail: str = Field(default="", max_length=500, description="e.g. the request path that answered 404")


class AgreementRemovedData(Payload):
    agreement_id: int
    observed_at: UtcDatetime
    evidence: RemovalEvidence


class AdditionRemovedData(Payload):
    agreement_id: int
    addition_id: int
    observed_at: UtcDatetime
    evidence: RemovalEvidence


class AgreementObserved(CloudEvent):
    type: Literal["psa.agreement.observed"] = "psa.agreement.observed"
    data: AgreementObservedData


class AgreementRemoved(CloudEvent):
    type: Literal["psa.agreement.removed"] = "psa.agreement.removed"
    data: AgreementRemovedData


class AdditionRemoved(CloudEvent):
    type: Literal["psa.addition.removed"] = "psa.addition.removed"
    data: AdditionRemovedData
