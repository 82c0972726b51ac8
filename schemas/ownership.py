"""Field ownership of a contract (docs/design.md#field-ownership): the one rule list every service uses.

| class      | fields                                                    | sync writes it?  | local edit |
|------------|-----------------------------------------------------------|------------------|------------|
| PSA-owned  | status, billing_cost (+ currency), billing_cycle          | always           | rejected   |
| PSA-seeded | name, contract_type, start_date, end_date, description    | until overridden | override   |
| local      | notes, owner, impact, tags, reminders                     | never            | accepted   |

The writer derives its upsert column lists and its edit checks from these tuples; the
database trigger guards exactly `PSA_OWNED_COLUMNS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

FieldClass = Literal["psa_owned", "psa_seeded", "local"]

PSA_OWNED: tuple[str, ...] = ("status", "billing_cost", "billing_cycle")
PSA_SEEDED: tuple[str, ...] = ("name", "contract_type", "start_date", "end_date", "description")
LOCAL: tuple[str, ...] = ("notes", "owner", "impact", "tags", "reminders")

PSA_OWNED_COLUMNS: tuple[str, ...] = ("status", "billing_amount", "billing_currency", "billing_cycle")
"""Database columns behind the PSA-owned fields (`billing_cost` is amount + currency)."""

# Aliases a UI may send for the cost's parts; they are PSA-owned like `billing_cost` itself.
_PSA_OWNED_ALIASES = {
    "billing_amount": "billing_cost",
    "billing_currency": "billing_cost",
    "currency": "billing_cost",
}


def field_class(field: str) -> FieldClass | None:
    """The ownership class of an editable field, or None for a field contracts do not have."""
    if field in PSA_OWNED or field in _PSA_OWNED_ALIASES:
        return "psa_owned"
    if field in PSA_SEEDED:
        return "psa_seeded"
    if field in LOCAL:
        return "local"
    return None


@dataclass(frozen=True)
class EditSplit:
    """A local edit sorted by ownership; `rejected` non-empty means the whole edit is refused."""

    psa_owned: tuple[str, ...]
    seeded: dict[str, object]
    local: dict[str, object]
    unknown: tuple[str, ...]

    @property
    def rejected(self) -> bool:
        return bool(self.psa_owned or self.unknown)


def split_edit(changes: Mapping[str, object], *, psa_synced: bool) -> EditSplit:
    """Sort an edit's fields by ownership.

    PSA-owned fields are refused only on PSA-synced contracts (a purely local contract owns
    them itself); unknown fields are always refused. Pure and deterministic.
    """
    owned = tuple(sorted(f for f in changes if field_class(f) == "psa_owned")) if psa_synced else ()
    unknown = tuple(sorted(f for f in changes if field_class(f) is None))
    seeded = {f: v for f, v in changes.items() if field_class(f) == "psa_seeded"}
    local = {f: v for f, v in changes.items() if field_class(f) == "local"}
    if not psa_synced:
        local.update({f: v for f, v in changes.items() if field_class(f) == "psa_owned"})
    return EditSplit(psa_owned=owned, seeded=seeded, local=local, unknown=unknown)
