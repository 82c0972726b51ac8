"""The mapper's state as the decisions' store: writes queue changelog records, failed batches undo."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from services.mapper.changelog import encode_key
from services.mapper.client_state import ClientIndex, IndexedStore
from services.mapper.output_producer import OutMessage
from services.mapper.positions import decode_position, encode_position, position_key
from services.mapper.state_store import (
    LazyClientIndex,
    MemoryBackend,
    StateBackend,
    item_prefix,
)


class StateStore(IndexedStore):
    """The mapper's state as `decide` sees it: a local backend (`services.mapper.state_store`:
    `memory://` or `rocksdb://`) plus the current batch's pending changes, with its per-client index.

    Writes go to an in-memory overlay and queue their changelog record (the key as a JSON string,
    to the partition of the message being handled). The batch's changelog records are produced with
    its outputs; once they are acknowledged, `keep()` writes the overlay to the backend together
    with the changelog offsets they end at (one atomic write for rocksdb). So the local store never
    holds a change the changelog lacks: a crash before `keep()` leaves the previous state and
    checkpoint, and recovery reads the tail the changelog has beyond it. `discard()` drops the
    overlay (a failed or cancelled batch leaves no trace). The index follows every write and undo;
    for `rocksdb://` it is a bounded `LazyClientIndex` built per client from prefix scans, for
    `memory://` the full `ClientIndex`, rebuilt (one pass) after each recovery.
    """

    def __init__(self, backend: StateBackend, changelog_name: str) -> None:
        self.backend = backend
        self.index: ClientIndex = LazyClientIndex(self._client_items) if backend.persistent else ClientIndex()
        self.index_lock = threading.Lock()
        """Held while a command is decided off the event loop and while the index is rebuilt."""
        self.changelog_name = changelog_name
        self.partition = 0
        self.pending: list[OutMessage] = []
        self._overlay: dict[str, bytes | None] = {}
        """Each key changed since `keep()`, with its new value (None: deleted)."""
        self._written: dict[int, int] = {}
        """Changelog partition -> the offset after the batch's last acknowledged changelog record."""

    def get(self, key: str, default: Any = None) -> Any:
        if key in self._overlay:
            value = self._overlay[key]
            return default if value is None else value
        found = self.backend.get(key)
        return default if found is None else found

    def __getitem__(self, key: str) -> bytes:
        value: bytes | None = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: bytes) -> None:
        self._overlay[key] = value
        self.index.on_write(key, value)
        self._log(key, value)

    def __delitem__(self, key: str) -> None:
        if self.get(key) is None:
            raise KeyError(key)
        self._overlay[key] = None
        self.index.on_write(key, None)
        self._log(key, None)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        keys = {k for k in self.backend.state_keys() if self._overlay.get(k, b"") is not None}
        keys.update(k for k, v in self._overlay.items() if v is not None)
        return iter(sorted(keys))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _client_items(self, client: str) -> Iterator[tuple[int, bytes]]:
        """Every item of `client` as stored now (pending changes included), for the lazy index."""
        prefix = item_prefix(client)
        items: dict[str, bytes | None] = dict(self.backend.scan(prefix))
        items.update((k, v) for k, v in self._overlay.items() if k.startswith(prefix))
        for key, raw in items.items():
            agreement = key[len(prefix) :]
            if raw is not None and agreement.isdigit():
                yield int(agreement), raw

    def rebuild_index(self) -> None:
        with self.index_lock:
            if isinstance(self.backend, MemoryBackend):
                self.index.rebuild(self.backend.data)
            else:
                self.index.rebuild({})

    def _log(self, key: str, value: bytes | None, partition: int | None = None) -> None:
        where = self.partition if partition is None else partition
        self.pending.append(OutMessage(self.changelog_name, encode_key(key), value, [], where))

    def position(self, topic: str, partition: int) -> int | None:
        """The next offset of `topic`/`partition` the state expects (`services.mapper.positions`)."""
        return decode_position(self.get(position_key(topic, partition)))

    def put_position(self, topic: str, partition: int, offset: int) -> None:
        """Record the next offset to handle; its changelog record goes to that partition."""
        key, value = position_key(topic, partition), encode_position(offset)
        self._overlay[key] = value
        self._log(key, value, partition)

    def take_pending(self) -> list[OutMessage]:
        pending, self.pending = self.pending, []
        return pending

    def written(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """The batch's changelog records were acknowledged, ending at these offsets (exclusive)."""
        for (topic, partition), offset in offsets.items():
            if topic == self.changelog_name:
                self._written[partition] = max(offset, self._written.get(partition, 0))

    def keep(self) -> None:
        """The changes so far are durable (their changelog records were written): store them
        locally with the changelog offsets they reach, in one write."""
        if self._overlay or self._written:
            self.backend.write(self._overlay, self._written)
        self._overlay = {}
        self._written = {}

    def discard(self) -> None:
        """Undo every change since `keep()` and drop their unsent changelog records: the local
        state is again what the changelog holds, so a batch that failed leaves no trace."""
        overlay, self._overlay = self._overlay, {}
        for key in overlay:
            self.index.on_write(key, self.backend.get(key))
        self._written = {}
        self.pending = []
