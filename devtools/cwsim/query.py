"""Pure helpers for the list query parameters: `orderBy`, `fields`, `page`/`pageSize`/`pageId`, `Link` headers.

No I/O. Errors are raised as `QueryError` (the HTTP layer answers 400 with the ConnectWise error body).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from devtools.cwsim.conditions import FieldTable, field_datetime, getter

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 1000


class QueryError(ValueError):
    """An invalid query parameter (answered with 400); `param` names it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


# ---------------------------------------------------------------------------------------------- orderBy


@dataclass(frozen=True, slots=True)
class SortKey:
    keys: tuple[str, ...]
    kind: str
    descending: bool


def parse_order_by(text: str, table: FieldTable) -> tuple[SortKey, ...]:
    """Parse `orderBy` (`field [asc|desc]`, comma-separated, nested via `/`); raises `QueryError`."""
    keys: list[SortKey] = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2:
            raise QueryError(f"invalid orderBy clause {part.strip()!r}", "orderBy")
        direction = words[1].lower() if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise QueryError(f"invalid orderBy direction {words[1]!r}", "orderBy")
        spec = table.resolve(words[0])
        if spec is None or spec.kind == "ref":
            raise QueryError(f"cannot order by {words[0]!r}", "orderBy")
        keys.append(SortKey(spec.keys, spec.kind, direction == "desc"))
    return tuple(keys)


def _sort_value(kind: str) -> Callable[[Any], Any]:
    if kind == "string":
        return lambda v: v.casefold() if isinstance(v, str) else str(v).casefold()
    if kind == "datetime":
        return lambda v: field_datetime(v) if isinstance(v, str) else None
    return lambda v: v


def sort_records(records: list[Mapping[str, Any]], order: Sequence[SortKey]) -> list[Mapping[str, Any]]:
    """Stable multi-key sort; nulls sort first ascending (SQL Server), ties broken by `id` ascending."""
    out = sorted(records, key=lambda r: r.get("id", 0))
    for key in reversed(order):
        get = getter(key.keys)
        conv = _sort_value(key.kind)
        present = [r for r in out if get(r) is not None]
        missing = [r for r in out if get(r) is None]
        present.sort(key=lambda r: conv(get(r)), reverse=key.descending)
        out = present + missing if key.descending else missing + present
    return out


# ---------------------------------------------------------------------------------------------- fields


def parse_fields(text: str) -> tuple[tuple[str, ...], ...]:
    """`id,name,company/id` -> (("id",), ("name",), ("company", "id")); empty items are ignored."""
    return tuple(tuple(p for p in item.strip().split("/") if p) for item in text.split(",") if item.strip())


def project(record: Mapping[str, Any], paths: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Partial response: keep only `paths` (nested), matching keys case-insensitively; missing ones vanish."""
    out: dict[str, Any] = {}
    for path in paths:
        _copy_path(record, out, path)
    return out


def _find_key(source: Mapping[str, Any], name: str) -> str | None:
    if name in source:
        return name
    lowered = name.lower()
    return next((k for k in source if k.lower() == lowered), None)


def _copy_path(source: Mapping[str, Any], target: dict[str, Any], path: Sequence[str]) -> None:
    if len(path) == 1 and path[0].lower() == "lastupdated" and isinstance(source.get("_info"), dict):
        path = ("_info", "lastUpdated")
    key = _find_key(source, path[0])
    if key is None:
        return
    value = source[key]
    if len(path) == 1:
        target[key] = value
        return
    if not isinstance(value, dict):
        return
    existing = target.get(key)
    sub: dict[str, Any] = existing if isinstance(existing, dict) else {}
    _copy_path(value, sub, path[1:])
    if sub:
        target[key] = sub


# ---------------------------------------------------------------------------------------------- paging


@dataclass(frozen=True, slots=True)
class Paging:
    page: int
    page_size: int
    forward_only: bool
    page_id: int | None


def _int_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise QueryError(f"{name} must be an integer, got {raw!r}", name) from None


def parse_paging(params: Mapping[str, str], forward_only: bool) -> Paging:
    """Read page/pageSize/pageId. pageSize defaults to 25 and is clamped to 1..1000; page < 1 means 1."""
    size = _int_param(params, "pageSize")
    page = _int_param(params, "page")
    page_id = _int_param(params, "pageId")
    page_size = DEFAULT_PAGE_SIZE if size is None else min(max(size, 1), MAX_PAGE_SIZE)
    return Paging(max(page or 1, 1), page_size, forward_only, page_id)


def last_page(total: int, page_size: int) -> int:
    """The final page number for `total` rows (1 when there are none)."""
    return max(1, math.ceil(total / page_size))


def page_slice(page: int, page_size: int) -> slice:
    start = (page - 1) * page_size
    return slice(start, start + page_size)


def navigable_links(
    base: str, params: Mapping[str, str], page: int, page_size: int, total: int
) -> list[tuple[str, str]]:
    """(rel, url) pairs for a navigable page, repeating the original query with `page` replaced.

    `first` and `prev` only after page 1, `next` and `last` only before the last page; nothing when
    everything fits on one page. Example: page 1 of 4 -> next(2), last(4); page 4 of 4 -> first(1), prev(3).
    """
    last = last_page(total, page_size)
    if page <= 1 and last <= 1:
        return []
    query = {k: v for k, v in params.items() if k not in ("page", "pageSize")}
    query["pageSize"] = str(page_size)
    prefix = f"{base}?{urlencode(query)}&page="
    links: list[tuple[str, str]] = []
    if page > 1:
        links.append(("first", f"{prefix}1"))
        links.append(("prev", f"{prefix}{min(page - 1, last)}"))
    if page < last:
        links.append(("next", f"{prefix}{page + 1}"))
        links.append(("last", f"{prefix}{last}"))
    return links


def forward_only_links(base: str, params: Mapping[str, str], last_id: int | None) -> list[tuple[str, str]]:
    """The forward-only `next` link (`pageId` = last id of this page); none for an empty page."""
    if last_id is None:
        return []
    query = {k: v for k, v in params.items() if k not in ("page", "pageId")}
    separator = "&" if query else ""
    return [("next", f"{base}?{urlencode(query)}{separator}pageId={last_id}")]


def link_header(links: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links)
