"""Waiting hints of one tenant (refresh a client, re-read an agreement): typed, coalesced, bounded."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

log = logging.getLogger(__name__)

MAX_REFRESH_HINTS = 1_000
MAX_RECHECK_HINTS = 10_000


@dataclass(frozen=True, slots=True)
class RefreshHint:
    """Re-read every agreement of one client now (`sync.command.refresh`)."""

    client_id: str
    correlationid: str | None


@dataclass(frozen=True, slots=True)
class RecheckHint:
    """Re-read one agreement (a ConnectWise callback); `deleted` when a callback said so."""

    agreement_id: int
    deleted: bool


Hint = RefreshHint | RecheckHint


class Hints:
    """The hints waiting for a tenant's scheduling loop.

    Refreshes coalesce per client (the first request's correlation id is kept), rechecks per
    agreement (`deleted` if any hint said so). At most `max_refreshes` clients and `max_rechecks`
    agreements wait; beyond, a hint is dropped and logged (`dropped` counts them): the scheduled
    polls and the sweep read everything anyway. `next()` hands out refreshes first, then
    rechecks, oldest first."""

    def __init__(
        self, tenant_id: str, *, max_refreshes: int | None = None, max_rechecks: int | None = None
    ) -> None:
        self._tenant_id = tenant_id
        self._max_refreshes = MAX_REFRESH_HINTS if max_refreshes is None else max_refreshes
        self._max_rechecks = MAX_RECHECK_HINTS if max_rechecks is None else max_rechecks
        self._refreshes: dict[str, str | None] = {}
        self._rechecks: dict[int, bool] = {}
        self.dropped = 0

    def add_refresh(self, client_id: str, correlationid: str | None) -> bool:
        """Queue (or coalesce) a refresh of `client_id`; False when dropped."""
        if client_id not in self._refreshes:
            if len(self._refreshes) >= self._max_refreshes:
                self._drop("refresh")
                return False
            self._refreshes[client_id] = correlationid
        return True

    def add_recheck(self, agreement_id: int, *, deleted: bool = False) -> bool:
        """Queue (or coalesce) a re-read of `agreement_id`; False when dropped."""
        if agreement_id not in self._rechecks and len(self._rechecks) >= self._max_rechecks:
            self._drop("recheck")
            return False
        self._rechecks[agreement_id] = self._rechecks.get(agreement_id, False) or deleted
        return True

    def next(self) -> Hint | None:
        """The next hint to run (removed from the waiting ones), None when none waits."""
        if self._refreshes:
            client_id = next(iter(self._refreshes))
            return RefreshHint(client_id, self._refreshes.pop(client_id))
        if self._rechecks:
            agreement_id = next(iter(self._rechecks))
            return RecheckHint(agreement_id, self._rechecks.pop(agreement_id))
        return None

    @property
    def waiting(self) -> int:
        return len(self._refreshes) + len(self._rechecks)

    @property
    def refreshes(self) -> Mapping[str, str | None]:
        """Clients waiting for a refresh -> correlation id (read-only view)."""
        return MappingProxyType(self._refreshes)

    @property
    def rechecks(self) -> Mapping[int, bool]:
        """Agreements waiting for a re-read -> whether a `deleted` callback named it (read-only view)."""
        return MappingProxyType(self._rechecks)

    def _drop(self, kind: str) -> None:
        self.dropped += 1
        log.warning("hint dropped: too many waiting", extra={"tenant_id": self._tenant_id, "kind": kind})
