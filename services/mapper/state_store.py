"""Where the mapper's state lives locally: `memory://` (a dict) or `rocksdb://` (rocksdict on disk).

Contract of a `StateBackend` (shared contract test: tests/unit/mapper/test_mapper_state_store.py):
- string keys, bytes values; `get` of an absent key is None;
- `write(changes, checkpoints)` applies a batch of puts (bytes) and deletes (None) together with
  the next changelog offset each named changelog partition is reflected up to, atomically (the
  rocksdb backend uses one RocksDB write batch: after a crash either all of it is there or none);
- `checkpoint(partition)` is that offset (None: nothing recovered or written yet for it);
- `scan(prefix)` lists the keys starting with `prefix` in key order with their values;
- checkpoints never show up among the state keys (`state_keys`, `scan`, `count`).

`memory://` keeps nothing across restarts (checkpoints start empty, so the whole changelog is read
again); `rocksdb://` keeps the state and its checkpoints in `<datadir>/state.rocksdb`, so a restart
reads only the changelog records written after the checkpoint (services.mapper.changelog).

`LazyClientIndex` is the per-client index (`state.ClientIndex`) for stores too big to index in
memory: a client's entry is built on first use from a prefix scan of its item keys (cost O(that
client)) and at most `max_clients` entries are kept (least recently used dropped).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Final, Protocol, cast

from services.mapper.client_state import ITEM_MARK, ClientIndex, _additions_of, _ClientEntry, _item_key

_CHECKPOINT_PREFIX: Final = b"\x00changelog|"
"""Reserved key prefix of the changelog checkpoints (state keys never start with NUL)."""
LAZY_INDEX_CLIENTS: Final = 256
"""Clients whose index entry is kept (~96 KiB each at 100 agreements x 3 additions, measured: ~24 MiB)."""


class StateBackend(Protocol):
    persistent: bool
    """True when the state and checkpoints survive a restart."""

    def get(self, key: str) -> bytes | None: ...

    def write(self, changes: Mapping[str, bytes | None], checkpoints: Mapping[int, int]) -> None: ...

    def checkpoint(self, partition: int) -> int | None: ...

    def scan(self, prefix: str) -> Iterator[tuple[str, bytes]]: ...

    def state_keys(self) -> Iterator[str]: ...

    def count(self) -> int: ...

    def clear(self) -> None:
        """Forget every key and checkpoint (the local copy no longer matches the changelog)."""

    def close(self) -> None: ...


class MemoryBackend:
    """`memory://`: a dict; nothing survives the process."""

    persistent = False

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.checkpoints: dict[int, int] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def write(self, changes: Mapping[str, bytes | None], checkpoints: Mapping[int, int]) -> None:
        data = self.data
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        self.checkpoints.update(checkpoints)

    def checkpoint(self, partition: int) -> int | None:
        return self.checkpoints.get(partition)

    def scan(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        for key in sorted(k for k in self.data if k.startswith(prefix)):
            yield key, self.data[key]

    def state_keys(self) -> Iterator[str]:
        return iter(list(self.data))

    def count(self) -> int:
        return len(self.data)

    def clear(self) -> None:
        self.data.clear()
        self.checkpoints.clear()

    def close(self) -> None:
        return None


class RocksBackend:
    """`rocksdb://`: one RocksDB database (rocksdict, raw bytes) at `path`, created when missing."""

    persistent = True

    def __init__(self, path: Path) -> None:
        from rocksdict import DBCompressionType, Options, Rdict  # only when this store is chosen

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(256)  # bounded file handles and table-reader memory
        options.set_write_buffer_size(32 * 1024 * 1024)  # memtables: at most 2 x 32 MiB in RAM
        options.set_max_write_buffer_number(2)
        options.set_compression_type(DBCompressionType.lz4())  # JSON snapshots compress well, cheaply
        self.db = Rdict(str(path), options)

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self.db.get(key.encode())
        return value

    def write(self, changes: Mapping[str, bytes | None], checkpoints: Mapping[int, int]) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                batch.delete(key.encode())
            else:
                batch.put(key.encode(), value)
        for partition, offset in checkpoints.items():
            batch.put(_CHECKPOINT_PREFIX + str(partition).encode(), str(offset).encode())
        self.db.write(batch)

    def checkpoint(self, partition: int) -> int | None:
        raw = self.db.get(_CHECKPOINT_PREFIX + str(partition).encode())
        return int(raw) if raw is not None else None

    def scan(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        start = prefix.encode()
        for key, value in self.db.items(from_key=start):
            raw_key = cast(bytes, key)
            if not raw_key.startswith(start):
                return
            yield raw_key.decode(), cast(bytes, value)

    def state_keys(self) -> Iterator[str]:
        for key in self.db.keys(from_key=b"\x01"):
            yield cast(bytes, key).decode()

    def count(self) -> int:
        """Exact (a full key scan: for tests and benchmarks, not the hot path)."""
        return sum(1 for _ in self.db.keys(from_key=b"\x01"))

    def clear(self) -> None:
        keys = list(self.db.keys())
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key in keys:
            batch.delete(key)
        self.db.write(batch)

    def live_data_bytes(self) -> int:
        """RocksDB's estimate of the live data size (after compression), for measurements."""
        return int(self.db.property_int_value("rocksdb.estimate-live-data-size") or 0)

    def close(self) -> None:
        self.db.close()


def open_backend(store: str, datadir: str | Path) -> StateBackend:
    """The backend named by `MAPPER_STORE` (`memory://` or `rocksdb://`), in `datadir`."""
    scheme = store.split("://", 1)[0].lower()
    if scheme == "memory":
        return MemoryBackend()
    if scheme == "rocksdb":
        return RocksBackend(Path(datadir) / "state.rocksdb")
    raise ValueError(f"unknown state store {store!r}: use memory:// or rocksdb://")


class LazyClientIndex(ClientIndex):
    """`ClientIndex` whose client entries are built on demand by `load(client)` and bounded.

    `load(client)` yields `(agreement id, encoded ItemState)` for every item of the client as the
    store holds it now (pending writes included). Writes to cached clients update their entry;
    writes to others are simply read from the store when the client is next looked up. `rebuild`
    only drops the cache (O(1)), so nothing is read at start-up.
    """

    def __init__(
        self, load: Callable[[str], Iterable[tuple[int, bytes]]], max_clients: int = LAZY_INDEX_CLIENTS
    ) -> None:
        super().__init__()
        self._load = load
        self._max_clients = max_clients
        self._cache: OrderedDict[str, _ClientEntry] = OrderedDict()
        self._clients = self._cache

    def _entry(self, client: str) -> _ClientEntry:
        entry = self._cache.get(client)
        if entry is not None:
            self._cache.move_to_end(client)
            return entry
        entry = _ClientEntry()
        for agreement_id, raw in self._load(client):
            additions = _additions_of(raw)
            entry.agreements[agreement_id] = additions
            for addition_id in additions:
                entry.owners.setdefault(addition_id, set()).add(agreement_id)
        self._cache[client] = entry
        while len(self._cache) > self._max_clients:
            self._cache.popitem(last=False)
        return entry

    def on_write(self, key: str, value: bytes | None) -> None:
        item = _item_key(key)
        if item is None or item[0] not in self._cache:
            return
        if value is None:
            self.drop(*item)
        else:
            self.put(*item, _additions_of(value))

    def rebuild(self, data: Mapping[str, bytes]) -> None:
        self._cache.clear()

    def agreements(self, client: str) -> list[int]:
        return sorted(self._entry(client).agreements)

    def owner(self, client: str, addition_id: int) -> int | None:
        listed = self._entry(client).owners.get(addition_id)
        return min(listed) if listed else None

    @property
    def cached_clients(self) -> int:
        return len(self._cache)


def item_prefix(client: str) -> str:
    """The key prefix of a client's items (`{client}|i|`)."""
    return f"{client}{ITEM_MARK}"
