"""Per-client state in the key-value store: item records, the client index and the decisions' typed view.

`ItemState` is one agreement's record, `ClientIndex` answers lookups in O(the client) whatever the
store's size, `ClientView` is what the decisions read and write.

Keys all start with the client key `{tenant}:{client}`, so every key of a client lives in the
changelog partition of that client's messages:

    "{client}|auto"           -> b"1" / b"0"       (the auto-sync flag; read on every message)
    "{client}|i|{agreement}"  -> ItemState: one JSON line (snapshot version and read time, its addition
                                 ids, the items' input digests, which items were mapped with which
                                 version and digest = linked, removals), then the
                                 raw `psa.agreement.observed` bytes of the newest snapshot - one
                                 changelog write per observed agreement
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Final

import orjson

Store = MutableMapping[str, bytes]


@dataclass
class ItemState:
    """One agreement and its additions: the stored snapshot's version, the digests of its items'
    mapped inputs (`schemas.psa_digest`), and what was mapped when.

    What was mapped is recorded as a token `{version}#{digest}` per item, never the version alone:
    ConnectWise versions have one-second resolution, so a second change within the same second has
    the same version and is told apart by its digest."""

    version: str
    additions: list[int]
    snapshot: bytes
    mapped_agreement: str | None = None
    mapped_additions: dict[int, str] = field(default_factory=dict)
    removed: bool = False
    removed_additions: set[int] = field(default_factory=set)
    removed_at: str | None = None
    """When the newest removal (of the agreement or one of its additions) was observed (ISO 8601)."""
    observed_at: str | None = None
    """The stored snapshot's `observed_at`: of two snapshots with the same version the later read wins."""
    agreement_digest: str = ""
    addition_digests: dict[int, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        meta = orjson.dumps(
            {
                "v": self.version,
                "add": self.additions,
                "ma": self.mapped_agreement,
                "mx": {str(k): v for k, v in self.mapped_additions.items()},
                "gone": self.removed,
                "gx": sorted(self.removed_additions),
                "ra": self.removed_at,
                "o": self.observed_at,
                "da": self.agreement_digest,
                "dx": {str(k): v for k, v in self.addition_digests.items()},
            }
        )
        return b"".join((meta, b"\n", self.snapshot))

    @classmethod
    def decode(cls, raw: bytes) -> ItemState:
        meta, _, snapshot = raw.partition(b"\n")  # compact JSON never contains a raw newline
        doc = orjson.loads(meta)
        return cls(
            version=doc["v"],
            additions=list(doc["add"]),
            snapshot=snapshot,
            mapped_agreement=doc["ma"],
            mapped_additions={int(k): v for k, v in doc["mx"].items()},
            removed=bool(doc["gone"]),
            removed_additions=set(doc["gx"]),
            removed_at=doc.get("ra"),
            # state written before digests existed: no digest, so every item counts as not mapped
            observed_at=doc.get("o"),
            agreement_digest=doc.get("da", ""),
            addition_digests={int(k): v for k, v in doc.get("dx", {}).items()},
        )

    def agreement_token(self) -> str:
        """What mapping the agreement now means: `{version}#{digest}`."""
        return f"{self.version}#{self.agreement_digest}"

    def addition_token(self, addition_id: int) -> str:
        return f"{self.version}#{self.addition_digests.get(addition_id, '')}"

    def pending(self) -> tuple[bool, list[int]]:
        """(agreement not mapped with its current content, additions not mapped with theirs)."""
        if self.removed:
            return False, []
        agreement = self.mapped_agreement != self.agreement_token()
        additions = [
            a
            for a in self.additions
            if a not in self.removed_additions and self.mapped_additions.get(a) != self.addition_token(a)
        ]
        return agreement, additions


ITEM_MARK: Final = "|i|"


def _item_key(key: str) -> tuple[str, int] | None:
    """(client, agreement id) of an item key `{client}|i|{agreement}`, else None (pure)."""
    client, mark, agreement = key.rpartition(ITEM_MARK)
    if not mark or not agreement.isdigit():
        return None
    return client, int(agreement)


def _additions_of(raw: bytes) -> tuple[int, ...]:
    """The addition ids an encoded ItemState lists (its first line only: no snapshot parse)."""
    meta = raw.partition(b"\n")[0]
    try:
        additions = orjson.loads(meta)["add"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ()
    return tuple(a for a in additions if isinstance(a, int))


@dataclass
class _ClientEntry:
    agreements: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """Each agreement of the client -> the addition ids its stored snapshot lists."""
    owners: dict[int, set[int]] = field(default_factory=dict)
    """Addition id -> the agreements whose stored snapshots list it (normally exactly one)."""


class ClientIndex:
    """Per client: its agreements and which agreement lists each addition.

    Derived from the item keys of a store, never stored itself: `IndexedStore` keeps it in step
    with every write, and `rebuild` recomputes it after the store was filled behind its back
    (changelog recovery). A lookup costs O(1), listing a client's agreements O(that
    client), whatever the size of the store.
    """

    def __init__(self) -> None:
        self._clients: dict[str, _ClientEntry] = {}

    def put(self, client: str, agreement_id: int, additions: tuple[int, ...]) -> None:
        entry = self._clients.get(client)
        if entry is None:
            entry = self._clients[client] = _ClientEntry()
        before = entry.agreements.get(agreement_id)
        if before == additions:
            return
        self._unlist(entry, agreement_id, before or ())
        for addition_id in additions:
            entry.owners.setdefault(addition_id, set()).add(agreement_id)
        entry.agreements[agreement_id] = additions

    @staticmethod
    def _unlist(entry: _ClientEntry, agreement_id: int, additions: tuple[int, ...]) -> None:
        owners = entry.owners
        for addition_id in additions:
            listed = owners.get(addition_id)
            if listed is not None:
                listed.discard(agreement_id)
                if not listed:
                    del owners[addition_id]

    def drop(self, client: str, agreement_id: int) -> None:
        entry = self._clients.get(client)
        if entry is None:
            return
        self._unlist(entry, agreement_id, entry.agreements.pop(agreement_id, ()))
        if not entry.agreements:
            del self._clients[client]

    def on_write(self, key: str, value: bytes | None) -> None:
        """Follow one write (`value` None: a delete) of any key; only item keys matter."""
        item = _item_key(key)
        if item is None:
            return
        if value is None:
            self.drop(*item)
        else:
            self.put(*item, _additions_of(value))

    def rebuild(self, data: Mapping[str, bytes]) -> None:
        """Recompute the whole index from `data` (one pass over the store)."""
        self._clients = {}
        for key in list(data.keys()):
            if ITEM_MARK in key:
                raw = data.get(key)
                if raw is not None:
                    self.on_write(key, raw)

    def agreements(self, client: str) -> list[int]:
        entry = self._clients.get(client)
        return sorted(entry.agreements) if entry is not None else []

    def owner(self, client: str, addition_id: int) -> int | None:
        """The agreement listing `addition_id` (the lowest id if ConnectWise ever lists it twice)."""
        entry = self._clients.get(client)
        listed = entry.owners.get(addition_id) if entry is not None else None
        return min(listed) if listed else None


class IndexedStore(MutableMapping[str, bytes]):
    """A key-value store (`data`: a dict, a faust table's data) with its `ClientIndex`.

    Every write through it updates the index; `rebuild_index` after `data` changed behind its
    back. Plain mappings handed to `decide` are wrapped (and indexed in one pass) per call."""

    def __init__(self, data: MutableMapping[str, bytes] | None = None) -> None:
        self.data: MutableMapping[str, bytes] = {} if data is None else data
        self.index = ClientIndex()
        self.index.rebuild(self.data)

    def rebuild_index(self) -> None:
        self.index.rebuild(self.data)

    def __getitem__(self, key: str) -> bytes:
        return self.data[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        self.data[key] = value
        self.index.on_write(key, value)

    def __delitem__(self, key: str) -> None:
        del self.data[key]
        self.index.on_write(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.data.keys()))

    def __len__(self) -> int:
        return len(self.data)


def indexed(store: Store) -> IndexedStore:
    return store if isinstance(store, IndexedStore) else IndexedStore(store)


class ClientView:
    """Typed access to one client's keys in the store."""

    def __init__(self, store: IndexedStore, client: str) -> None:
        self.store = store
        self.client = client

    def _k(self, *parts: object) -> str:
        return "|".join((self.client, *map(str, parts)))

    def auto_sync(self) -> bool:
        return self.store.get(self._k("auto")) == b"1"

    def put_auto_sync(self, enabled: bool) -> None:
        self.store[self._k("auto")] = b"1" if enabled else b"0"

    def agreement_ids(self) -> list[int]:
        """Every agreement of the client ever observed (from the index: O(this client))."""
        return self.store.index.agreements(self.client)

    def owner_of(self, addition_id: int) -> int | None:
        """The agreement whose newest snapshot lists `addition_id` (from the index: O(1))."""
        return self.store.index.owner(self.client, addition_id)

    def item(self, agreement_id: int) -> ItemState | None:
        raw = self.store.get(self._k("i", agreement_id))
        return ItemState.decode(raw) if raw is not None else None

    def put_item(self, agreement_id: int, item: ItemState) -> None:
        self.store[self._k("i", agreement_id)] = item.encode()
