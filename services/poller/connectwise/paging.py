"""Paging rules for ConnectWise list endpoints (pure functions).

Two modes (docs/connectwise.md#paging):

* navigable (default): `page` (1-based) and `pageSize` (≤ 1,000). The client stops after a short
  page, an empty page, or a page whose `Link` header is present but has no `rel="next"`. A missing
  `Link` header on a full page is not trusted as "last page": the next page is read (it is empty).
* forward-only: request header `pagination-type: forward-only`, cursor `pageId` (rows with
  `id > pageId`, ordered by id, `orderBy` not allowed). The next cursor is the `pageId` of the
  `rel="next"` link, else the last row's id; the client stops on no next link, an empty page or
  a short page.

The client never follows the URL of a `Link` header (it could point to another host, and
credentials must not follow it); it only reads the `page`/`pageId` numbers out of it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 1000


class Paging(StrEnum):
    NAVIGABLE = "navigable"
    FORWARD_ONLY = "forward-only"


def validate_page_size(page_size: int) -> int:
    """Return `page_size` if 1..1000, else raise ValueError (ConnectWise's maximum is 1,000)."""
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be an int in 1..{MAX_PAGE_SIZE}, got {page_size!r}")
    return page_size


def parse_link_header(value: str | None) -> dict[str, str]:
    """`rel → url` from an RFC 5988 `Link` header (empty dict when absent)."""
    links: dict[str, str] = {}
    if not value:
        return links
    for part in _split_links(value):
        part = part.strip()
        if not part.startswith("<") or ">" not in part:
            continue
        url, _, params = part[1:].partition(">")
        for param in params.split(";"):
            key, _, raw = param.strip().partition("=")
            if key.strip().lower() == "rel":
                for rel in raw.strip().strip('"').split():
                    links.setdefault(rel.lower(), url.strip())
    return links


def _split_links(value: str) -> list[str]:
    """Split on commas outside `<...>` (URLs may contain commas in their query)."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in value:
        if char == "<":
            depth += 1
        elif char == ">":
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def query_int(url: str, name: str) -> int | None:
    """The integer query parameter `name` of `url` (case-insensitive name), or None."""
    query = parse_qs(urlsplit(url).query)
    for key, values in query.items():
        if key.lower() == name.lower() and values:
            try:
                return int(values[0])
            except ValueError:
                return None
    return None


def navigable_has_more(
    rows: list[Any], page_size: int, links: dict[str, str], link_header_present: bool
) -> bool:
    """Whether another navigable page should be read after this one."""
    if len(rows) < page_size:
        return False
    return not (link_header_present and "next" not in links)


def forward_only_next_page_id(rows: list[Any], page_size: int, links: dict[str, str]) -> int | None:
    """The next `pageId` after this forward-only page, or None when this was the last page."""
    if not rows or len(rows) < page_size:
        return None
    next_url = links.get("next")
    if next_url is None:
        return None
    from_link = query_int(next_url, "pageId")
    if from_link is not None:
        return from_link
    last = rows[-1]
    last_id = last.get("id") if isinstance(last, dict) else None
    return last_id if isinstance(last_id, int) and not isinstance(last_id, bool) else None
