"""Build ConnectWise `conditions` strings that no value can change the meaning of.

    from services.poller.connectwise import conditions as cond
    q = cond.eq("company/id", 42) & cond.ge("lastUpdated", datetime(2026, 1, 1, tzinfo=UTC))
    str(q)  # 'company/id = 42 and lastUpdated >= [2026-01-01T00:00:00Z]'

Grammar (docs/connectwise.md#conditions): `field op value`, joined by `and`/`or`, parentheses to group.
Values are rendered here, never by string formatting at call sites:

* `str`  → a quoted literal. Double quotes by default; single quotes when the value contains a
  double quote (both quote styles are accepted by ConnectWise). ConnectWise documents no escape
  sequence inside a literal, so a value that contains *both* quote kinds, a backslash or a control
  character cannot be written safely and raises `ConditionError` instead of being guessed at.
* `int`  → bare decimal, validated to the 64-bit range (`bool` is not an int here).
* `bool` → `True` / `False`.
* `Decimal`/`float` → plain decimal notation (finite only).
* `datetime` → `[YYYY-MM-DDTHH:MM:SSZ]` in UTC; must be timezone-aware; sub-seconds are dropped
  (ConnectWise stores whole seconds), which can only widen `>=`/`>` filters, never narrow them.
* `date` → `[YYYY-MM-DDT00:00:00Z]`.
* `None` → `null`, only with `eq`/`ne`.

Field paths must match `name(/name)*` with names `[A-Za-z_][A-Za-z0-9_]*`.

The module is pure: no I/O, deterministic output. `unsafe_raw` exists for tests and operator
tools that need to send a hand-written (possibly malformed) string; the poller never uses it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TypeAlias

Value: TypeAlias = str | int | bool | Decimal | float | datetime | date | None

FIELD_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*")
_MAX_FIELD_LENGTH = 200
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_FORBIDDEN_IN_STRING = re.compile(r"[\x00-\x1f\x7f\\]")


class ConditionError(ValueError):
    """A field path or value that cannot be written into a condition safely."""


def validate_field(field: str) -> str:
    """Return `field` if it is a valid field path (`company/id`, `_info/lastUpdated`), else raise."""
    if not isinstance(field, str) or len(field) > _MAX_FIELD_LENGTH or not FIELD_PATTERN.fullmatch(field):
        raise ConditionError(f"invalid field path {field!r}: expected name(/name)* of [A-Za-z0-9_]")
    return field


def quote_string(value: str) -> str:
    """Quote `value` as one string literal, or raise `ConditionError` if that cannot be done safely."""
    if not isinstance(value, str):
        raise ConditionError(f"expected a string, got {type(value).__name__}")
    if _FORBIDDEN_IN_STRING.search(value):
        raise ConditionError("string values may not contain backslashes or control characters")
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    raise ConditionError("string values may not contain both single and double quotes")


def format_datetime(value: datetime) -> str:
    """`[YYYY-MM-DDTHH:MM:SSZ]` in UTC; naive datetimes are rejected."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConditionError("datetimes in conditions must be timezone-aware")
    return "[" + value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "]"


def format_value(value: Value) -> str:
    """Render one value as a condition literal (see the module docstring for the rules)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise ConditionError(f"integer {value} is out of range")
        return str(int(value))
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return format_datetime(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ConditionError("numbers in conditions must be finite")
        return format(value, "f")
    if isinstance(value, str):
        return quote_string(value)
    raise ConditionError(f"unsupported value type {type(value).__name__}")


class Condition:
    """A rendered, immutable condition. Combine with `&` (and) and `|` (or); `str()` renders it."""

    __slots__ = ()

    def render(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.render()

    def __and__(self, other: Condition) -> Condition:
        return _join("and", self, other)

    def __or__(self, other: Condition) -> Condition:
        return _join("or", self, other)


@dataclass(frozen=True, slots=True)
class _Comparison(Condition):
    field: str
    operator: str
    literal: str

    def render(self) -> str:
        return f"{self.field} {self.operator} {self.literal}"


@dataclass(frozen=True, slots=True)
class _Group(Condition):
    joiner: str  # "and" | "or"
    parts: tuple[Condition, ...]

    def render(self) -> str:
        rendered = []
        for part in self.parts:
            text = part.render()
            if isinstance(part, _Group | _Raw):
                text = f"({text})"
            rendered.append(text)
        return f" {self.joiner} ".join(rendered)


@dataclass(frozen=True, slots=True)
class _Raw(Condition):
    text: str

    def render(self) -> str:
        return self.text


def _join(joiner: str, left: Condition, right: Condition) -> Condition:
    if not isinstance(left, Condition) or not isinstance(right, Condition):
        raise TypeError("conditions can only be combined with other conditions")
    parts: list[Condition] = []
    for side in (left, right):
        if isinstance(side, _Group) and side.joiner == joiner:
            parts.extend(side.parts)
        else:
            parts.append(side)
    return _Group(joiner, tuple(parts))


def all_of(*conditions: Condition) -> Condition:
    """`a and b and c`; at least one condition."""
    return _combine("and", conditions)


def any_of(*conditions: Condition) -> Condition:
    """`a or b or c`; at least one condition."""
    return _combine("or", conditions)


def _combine(joiner: str, conditions: Iterable[Condition]) -> Condition:
    items = list(conditions)
    if not items:
        raise ConditionError("need at least one condition")
    result = items[0]
    for item in items[1:]:
        result = _join(joiner, result, item)
    return result


def _compare(field: str, operator: str, value: Value) -> Condition:
    return _Comparison(validate_field(field), operator, format_value(value))


def eq(field: str, value: Value) -> Condition:
    """`field = value` (`value` None renders `field = null`)."""
    return _compare(field, "=", value)


def ne(field: str, value: Value) -> Condition:
    """`field != value`."""
    return _compare(field, "!=", value)


def _not_null(field: str, operator: str, value: Value) -> Condition:
    if value is None:
        raise ConditionError(f"null cannot be used with {operator}")
    return _compare(field, operator, value)


def lt(field: str, value: Value) -> Condition:
    """`field < value`."""
    return _not_null(field, "<", value)


def le(field: str, value: Value) -> Condition:
    """`field <= value`."""
    return _not_null(field, "<=", value)


def gt(field: str, value: Value) -> Condition:
    """`field > value`."""
    return _not_null(field, ">", value)


def ge(field: str, value: Value) -> Condition:
    """`field >= value`."""
    return _not_null(field, ">=", value)


def contains(field: str, text: str) -> Condition:
    """`field contains "text"` (text is a literal string)."""
    return _Comparison(validate_field(field), "contains", quote_string(text))


def not_contains(field: str, text: str) -> Condition:
    """`field not contains "text"`."""
    return _Comparison(validate_field(field), "not contains", quote_string(text))


def like(field: str, pattern: str) -> Condition:
    """`field like "pattern"`; `*` (and `%`) in `pattern` are wildcards on purpose."""
    return _Comparison(validate_field(field), "like", quote_string(pattern))


def in_(field: str, values: Iterable[int | str]) -> Condition:
    """`field in (v1, v2, ...)`; non-empty, ints or strings only."""
    items = list(values)
    if not items:
        raise ConditionError("`in` needs at least one value")
    rendered = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise ConditionError("`in` accepts ints and strings only")
        rendered.append(format_value(item))
    return _Comparison(validate_field(field), "in", "(" + ", ".join(rendered) + ")")


def unsafe_raw(text: str) -> Condition:
    """A hand-written condition sent as is. For tests and operator tools only, never for user values."""
    return _Raw(text)


def render(condition: Condition | None) -> str | None:
    """The `conditions` query value for `condition` (None → no parameter)."""
    return None if condition is None else condition.render()
