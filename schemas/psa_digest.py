"""Digests of what a contract record is mapped from: a PSA item is identified by its content, never
by its one-second `lastUpdated` alone (pure).

ConnectWise's `_info.lastUpdated` has one-second resolution, and bulk edits and scripts change a
record several times a second, so two different snapshots can carry the same version. The mapper
records which (`psa_last_updated`, digest) it mapped and maps again when either differs; the record
carries the digest (`source.psa_digest`), and the writer's catalog compares the item's digest with
its contract's, so a second change within the same second is neither skipped nor shown as synced.

- `agreement_digest(data)`: the agreement's typed fields (the ones the mapping reads: ConnectWise's
  unknown fields, which the models keep but never read, and `_info` are left out), the tenant's
  `time_zone` and `default_currency`.
- `addition_digest(data, addition)`: the addition's typed fields (`_info` left out), the agreement
  fields an addition's mapping reads (`ADDITION_CONTEXT_FIELDS`), `time_zone` and `default_currency`.
  A change to the agreement's name or amount does not change its additions' digests.

Left out on purpose: `observed_at` (the day "today" falls on changes status only through a new
snapshot version, as before) and the tenant/client ids (part of the contract key). Equal inputs give
equal digests in every process (the models' fields in declaration order, Decimals normalised); a
digest is 16 hexadecimal digits (BLAKE2b, 64 bits: a collision between two changes of one item
within one second is not a practical concern).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Final, get_args

import orjson
from pydantic import BaseModel

from schemas.connectwise import CwAddition
from schemas.psa import AgreementObservedData

DIGEST_PATTERN: Final = r"^[0-9a-f]{16}$"

ADDITION_CONTEXT_FIELDS: Final[tuple[str, ...]] = (
    "id",
    "parent_agreement",
    "start_date",
    "end_date",
    "no_ending_date_flag",
    "cancelled_flag",
    "agreement_status",
    "billing_cycle",
    "bill_one_time_flag",
    "currency",
)
"""The agreement fields an addition's record depends on: its status, currency, billing cycle,
category, end date, parent key (and whether the agreement can be mapped at all)."""

_LEFT_OUT: Final = frozenset({"info"})
_INCLUDES: dict[type[BaseModel], dict[str, Any]] = {}


def _model_type(annotation: Any) -> type[BaseModel] | None:
    """The model class of a field typed `Model` or `Model | None`, else None."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _include(model: type[BaseModel]) -> dict[str, Any]:
    """The `model_dump(include=...)` spec of a model's typed fields, nested (unknown fields and `_info`
    left out); computed once per class."""
    spec = _INCLUDES.get(model)
    if spec is None:
        spec = {}
        for name, info in model.model_fields.items():
            if name in _LEFT_OUT:
                continue
            nested = _model_type(info.annotation)
            spec[name] = _include(nested) if nested is not None else True
        _INCLUDES[model] = spec
    return spec


def _plain(model: BaseModel, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The typed fields of `model` (or the named ones) as plain values, in pydantic's own dump."""
    spec = _include(type(model))
    if fields is not None:
        spec = {name: spec[name] for name in fields}
    return model.model_dump(include=spec)


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value.normalize()) if value.is_finite() else str(value)
    raise TypeError(f"{type(value).__name__} is not a PSA input")


def _encode(document: Any) -> bytes:
    """Canonical JSON: pydantic dumps fields in declaration order, so equal inputs encode equally."""
    return orjson.dumps(document, default=_canonical)


def _digest(*parts: bytes) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def _tenant_context(data: AgreementObservedData) -> dict[str, Any]:
    return {"time_zone": data.time_zone, "default_currency": data.default_currency}


def agreement_digest(data: AgreementObservedData) -> str:
    """The digest of everything the agreement's record is mapped from (see the module docstring)."""
    return _digest(_encode({"agreement": _plain(data.agreement), **_tenant_context(data)}))


class AdditionDigests:
    """`addition_digest` for every addition of one snapshot, the agreement's part computed once."""

    def __init__(self, data: AgreementObservedData) -> None:
        agreement = data.agreement
        self._context = _encode(
            {"agreement": _plain(agreement, ADDITION_CONTEXT_FIELDS), **_tenant_context(data)}
        )

    def __call__(self, addition: CwAddition) -> str:
        return _digest(self._context, b"\n", _encode(_plain(addition)))


def addition_digest(data: AgreementObservedData, addition: CwAddition) -> str:
    """The digest of everything an addition's record is mapped from (see the module docstring)."""
    return AdditionDigests(data)(addition)
