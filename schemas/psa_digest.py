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
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, get_args

import orjson
from pydantic import BaseModel

from schemas.connectwise import CwAddition, CwAgreement

if TYPE_CHECKING:  # the snapshot protocol lives with the compiled decoder, which imports this module
    from schemas.fast import AdditionView, ObservedSnapshot

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


def _plain(item: Any, model: type[BaseModel], fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The typed fields of `item` (or the named ones) as plain values, as pydantic dumps them.

    `item` is an instance of `model` (pydantic) or has its attributes (the compiled decoder's
    structs, `schemas.fast`): both give the same dict, field for field in declaration order."""
    spec = _include(model)
    if fields is not None:
        spec = {name: spec[name] for name in fields}
    if isinstance(item, BaseModel):
        return item.model_dump(include=spec)
    key = (model, None if fields is None else tuple(fields))
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = _plan(model, spec)
    return _attributes(item, plan)


_Plan = list[tuple[str, str, Any]]
"""Per field: (attribute, the key `model_dump` writes, the nested field's plan or None)."""
_PLANS: dict[tuple[type[BaseModel], tuple[str, ...] | None], _Plan] = {}


def _plan(model: type[BaseModel], spec: dict[str, Any]) -> _Plan:
    """How to dump `spec` of an object with `model`'s attributes (computed once per model and fields):
    keys are the aliases when the model serialises by alias, as `model_dump` writes them."""
    by_alias = bool(model.model_config.get("serialize_by_alias"))
    plan: _Plan = []
    for name, nested in spec.items():
        info = model.model_fields[name]
        key = (info.serialization_alias or info.alias or name) if by_alias else name
        sub = None
        if nested is not True:
            nested_model = _model_type(info.annotation)
            assert nested_model is not None
            sub = _plan(nested_model, nested)
        plan.append((name, key, sub))
    return plan


def _attributes(item: Any, plan: _Plan) -> dict[str, Any]:
    """`model_dump(include=...)` of an object that is not a pydantic instance, by its plan."""
    out: dict[str, Any] = {}
    for name, key, sub in plan:
        value = getattr(item, name)
        if value is not None:
            if sub is not None:
                value = _attributes(value, sub)
            elif type(value) is not datetime and isinstance(value, datetime):
                value = datetime(
                    value.year,
                    value.month,
                    value.day,
                    value.hour,
                    value.minute,
                    value.second,
                    value.microsecond,
                    value.tzinfo,
                    fold=value.fold,
                )
        out[key] = value
    return out


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


def _tenant_context(data: ObservedSnapshot) -> dict[str, Any]:
    return {"time_zone": data.time_zone, "default_currency": data.default_currency}


def agreement_digest(data: ObservedSnapshot) -> str:
    """The digest of everything the agreement's record is mapped from (see the module docstring)."""
    return _digest(_encode({"agreement": _plain(data.agreement, CwAgreement), **_tenant_context(data)}))


class AdditionDigests:
    """`addition_digest` for every addition of one snapshot, the agreement's part computed once."""

    def __init__(self, data: ObservedSnapshot) -> None:
        agreement = data.agreement
        self._context = _encode(
            {"agreement": _plain(agreement, CwAgreement, ADDITION_CONTEXT_FIELDS), **_tenant_context(data)}
        )

    def __call__(self, addition: AdditionView) -> str:
        return _digest(self._context, b"\n", _encode(_plain(addition, CwAddition)))


def addition_digest(data: ObservedSnapshot, addition: AdditionView) -> str:
    """The digest of everything an addition's record is mapped from (see the module docstring)."""
    return AdditionDigests(data)(addition)
