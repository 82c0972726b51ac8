"""Rendered catalog documents, reused while the read model's version of the client is unchanged.

A document is stored under (tenant, client, listed states) with the `ReadModel.catalog_version` it
was read at or after, and returned only for a request that reads the same version: a write to any
row the document depends on changes the version, so a changed catalog is never answered from the
cache. Least recently used entries are dropped beyond `max_entries`; 0 disables the cache. Not
thread-safe: one instance per event loop.
"""

from __future__ import annotations

from collections import OrderedDict

CacheKey = tuple[str, str, tuple[str, ...]]


class CatalogCache:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[CacheKey, tuple[str, bytes]] = OrderedDict()

    def get(self, key: CacheKey, version: str) -> bytes | None:
        """The document stored for `key` at exactly `version`, else None."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: CacheKey, version: str, document: bytes) -> None:
        """Store `document`, read at `version` or later (never earlier)."""
        if self.max_entries <= 0:
            return
        self._entries[key] = (version, document)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
