"""Failure policy of one tenant: 401/403 pause it with backoff, other errors degrade it, a success
clears both; what each failure's `sync.failed` says (`TenantHealth`, `Failure`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from services.common.metrics import TENANT_PAUSED
from services.poller.connectwise import (
    ConnectWiseAuthenticationError,
    ConnectWiseError,
    ConnectWisePermissionError,
)

FIRST_PAUSE = timedelta(minutes=1)
MAX_PAUSE = timedelta(hours=1)
Status = Literal["ok", "paused", "degraded"]


def pause_for(failures: int) -> timedelta:
    """Backoff of a tenant paused by 401/403: 1 min, 2, 4, ... capped at 1 h (pure)."""
    pause: timedelta = FIRST_PAUSE * (2 ** max(0, min(failures - 1, 16)))
    return min(MAX_PAUSE, pause)


def first_error(error: BaseException) -> BaseException:
    """The first leaf of an exception group (a TaskGroup wraps task errors), else `error` itself."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


@dataclass(frozen=True, slots=True)
class Failure:
    """What a failed run's `sync.failed` says."""

    error_code: str
    message: str
    retryable: bool
    operator_action: str


class TenantHealth:
    """The tenant's state for heartbeats and scheduling: `ok`, `degraded` (the last run failed) or
    `paused` until `paused_until` (ConnectWise refused the credentials or a permission: 1 min,
    doubling per failure in a row up to 1 h; metric `contract_sync_tenant_paused`)."""

    def __init__(self, tenant_id: str) -> None:
        self._tenant_id = tenant_id
        self.status: Status = "ok"
        self.paused_until: datetime | None = None
        self.last_error = ""
        self._auth_failures = 0

    def failed(self, error: Exception, stage: str, now: datetime) -> Failure:
        """Record a run that raised `error`; returns what its `sync.failed` says."""
        if isinstance(error, ConnectWiseError):
            fields = error.to_event_fields()
            if isinstance(error, ConnectWiseAuthenticationError | ConnectWisePermissionError):
                self._auth_failures += 1
                self.paused_until = now + pause_for(self._auth_failures)
                self.status = "paused"
                TENANT_PAUSED.labels(self._tenant_id).set(1)
            else:
                self.status = "degraded"
            self.last_error = str(fields["message"])[:500]
            return Failure(
                str(fields["error_code"]),
                str(fields["message"]),
                bool(fields["retryable"]),
                str(fields["operator_action"]),
            )
        self.status = "degraded"
        self.last_error = type(error).__name__
        return Failure(
            type(error).__name__,
            f"{type(error).__name__} in {stage}",
            True,
            "Check the poller logs; the run is retried on the next cycle.",
        )

    def succeeded(self) -> None:
        """Record a successful run: the tenant is `ok` and unpaused."""
        self._auth_failures = 0
        self.paused_until = None
        self.status = "ok"
        self.last_error = ""
        TENANT_PAUSED.labels(self._tenant_id).set(0)

    def is_paused(self, now: datetime) -> bool:
        return self.paused_until is not None and now < self.paused_until

    def detail(self) -> str:
        """The heartbeat's detail: the last error, with the pause's end when paused."""
        if self.status == "paused" and self.paused_until is not None:
            return f"paused until {self.paused_until.isoformat()}: {self.last_error}"
        return self.last_error
