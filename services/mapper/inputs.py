"""Parsing the mapper's input on the hot path: `parse_input(topic, raw)`.

Same contract as `schemas.topics.parse` (raises `pydantic.ValidationError` / `ValueError`, never
returns a partially valid message, same error locations and messages), with one difference for
`psa.agreement.observed`: ConnectWise's unknown agreement and addition fields are dropped
(`extra="ignore"`) instead of kept on the models. The mapper never reads them (it stores the raw
bytes, not the models) and `schemas.topics.parse` never validates them either, so both accept and
reject exactly the same messages; keeping them costs a noticeable share of each parse. The
returned models are subclasses of the wire models (`isinstance(event, AgreementObserved)` holds).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, TypeAdapter

from schemas.connectwise import CwAddition, CwAgreement
from schemas.envelope import CloudEvent
from schemas.psa import AdditionRemoved, AgreementObserved, AgreementObservedData, AgreementRemoved
from schemas.topics import PSA_AGREEMENTS, parse


class LeanAgreement(CwAgreement):
    model_config = ConfigDict(**{**CwAgreement.model_config, "extra": "ignore"})


class LeanAddition(CwAddition):
    model_config = ConfigDict(**{**CwAddition.model_config, "extra": "ignore"})


class LeanObservedData(AgreementObservedData):
    agreement: LeanAgreement
    additions: list[LeanAddition] = Field(default_factory=list)  # type: ignore[assignment]


class LeanObserved(AgreementObserved):
    data: LeanObservedData


LeanPsaEvent = Annotated[LeanObserved | AgreementRemoved | AdditionRemoved, Field(discriminator="type")]
_PSA: TypeAdapter[LeanPsaEvent] = TypeAdapter(LeanPsaEvent)


def parse_input(topic: str, raw: bytes | str) -> CloudEvent:
    """`schemas.topics.parse`, without keeping ConnectWise's unknown fields of observed snapshots."""
    if topic == PSA_AGREEMENTS:
        event: CloudEvent = _PSA.validate_json(raw)
        return event
    return parse(topic, raw)
