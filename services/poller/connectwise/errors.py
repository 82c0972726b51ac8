"""Typed errors of the ConnectWise Manage client.

Every failure the client surfaces is a `ConnectWiseError`; nothing else escapes its public
methods (programming errors such as an invalid condition raise `ValueError` subclasses before
any request is made).

    ConnectWiseError                      base; `.retryable`, `.status_code`, `.code`, `.operator_action`
    ├── ConnectWiseAuthenticationError    401 — keys, company id or clientId rejected (not retryable)
    ├── ConnectWisePermissionError        403 — the API member's security role lacks a permission;
    │                                           `.permission` names what to grant (not retryable)
    ├── ConnectWiseNotFoundError          404 with ConnectWise's own JSON `{"code": "NotFound", ...}` body,
    │                                           after one codebase refresh: proof the record is absent
    ├── ConnectWiseForeignNotFoundError   any other 404 (a proxy or gateway page, "the endpoint does not
    │                                           exist"): proves nothing (retryable)
    ├── ConnectWiseBadRequestError        400 (and other 4xx) — carries ConnectWise's `code`/`message`/`errors`
    ├── ConnectWiseThrottledError         429 — after the retry budget is spent; `.retry_after` (retryable)
    ├── ConnectWiseServerError            5xx — after the retry budget is spent (retryable)
    ├── ConnectWiseTransportError         timeouts, connection and TLS errors after retries (retryable)
    └── ConnectWiseProtocolError          an answer the client cannot use (not JSON, wrong shape,
                                          a redirect, paging that does not advance) (not retryable)

`ConditionError` (in `conditions`) is a `ValueError`, raised while *building* a query.

Guarantees: messages, `str()` and `repr()` of every error hold no credentials: errors are built
from the method, the URL path and ConnectWise's error body only (never from request headers), and
the client scrubs its own secrets out of any server text before it is stored here.
"""

from __future__ import annotations

from typing import Any

# ConnectWise security-role permissions per API area (docs/connectwise.md#permissions). Keys are URL-path
# prefixes below /apis/3.0; the longest matching prefix wins.
_PERMISSIONS: dict[str, str] = {
    "/finance/agreements/types": (
        "System > Table Setup: Inquire Level All (agreement types are a setup table; "
        "ConnectWise does not document whether it is needed)"
    ),
    "/finance/agreements": "Finance > Agreements: Inquire Level All",
    "/finance/billingCycles": (
        "System > Table Setup: Inquire Level All (billing cycles are a setup table; "
        "ConnectWise does not document whether it is needed)"
    ),
    "/company/companies": "Companies > Company Maintenance: Inquire Level All",
    "/system/callbacks": (
        "the System module permission that manages callbacks (ConnectWise does not document which one; "
        "check the API member's security role under System)"
    ),
    "/system/info": "System module inquiry access (ConnectWise does not document which one)",
}


def permission_for_path(path: str) -> str:
    """The ConnectWise permission an API member needs to read `path` (a path below `/apis/3.0`)."""
    best = ""
    for prefix in _PERMISSIONS:
        if (path == prefix or path.startswith(prefix + "/")) and len(prefix) > len(best):
            best = prefix
    if best:
        return _PERMISSIONS[best]
    return f"inquire access to the ConnectWise module that owns {path}"


class ConnectWiseError(Exception):
    """Base of every error the ConnectWise client raises.

    `retryable` tells the caller whether trying the same call later can succeed without an
    operator changing anything; `operator_action` says what a human should do otherwise.
    """

    retryable: bool = False
    default_action: str = "Check the poller logs for the ConnectWise request that failed."

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        status_code: int | None = None,
        code: str | None = None,
        cw_message: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        operator_action: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path
        self.status_code = status_code
        self.code = code
        self.cw_message = cw_message
        self.errors = errors or []
        self.operator_action = operator_action or self.default_action
        self.request_id = request_id

    def __str__(self) -> str:
        where = f"{self.method} {self.path}: " if self.method and self.path else ""
        status = f" (HTTP {self.status_code})" if self.status_code is not None else ""
        return f"{where}{self.message}{status}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code!r}, code={self.code!r}, "
            f"method={self.method!r}, path={self.path!r}, retryable={self.retryable!r}, "
            f"message={self.message!r})"
        )

    def to_event_fields(self) -> dict[str, Any]:
        """Fields for a `sync.failed` event: stable error code, message, retryable, operator action."""
        return {
            "error_code": type(self).__name__,
            "status_code": self.status_code,
            "connectwise_code": self.code,
            "message": str(self),
            "retryable": self.retryable,
            "operator_action": self.operator_action,
        }


class ConnectWiseAuthenticationError(ConnectWiseError):
    """401: ConnectWise rejected the company id, the API member keys or the clientId."""

    retryable = False
    default_action = (
        "Check the ConnectWise company id, the API member's public/private key pair (the private key "
        "is shown only once; generate a new pair if in doubt) and that the clientId is active. "
        "Sync for this tenant is paused until the credentials are fixed."
    )


class ConnectWisePermissionError(ConnectWiseError):
    """403: the API member's security role does not allow this call; `permission` names the grant."""

    retryable = False

    def __init__(self, message: str, *, permission: str, **kwargs: Any) -> None:
        kwargs.setdefault(
            "operator_action",
            f"In ConnectWise, grant the API member's security role: {permission}. "
            "Sync for this tenant is paused until the role is fixed.",
        )
        super().__init__(message, **kwargs)
        self.permission = permission


NOT_FOUND_CODE = "NotFound"
"""The `code` of ConnectWise's own JSON body for a missing record: `{"code": "NotFound", "message": ...}`."""


class ConnectWiseNotFoundError(ConnectWiseError):
    """404 whose JSON body is ConnectWise's own `{"code": "NotFound", ...}`, confirmed after one
    codebase refresh: the only answer the poller takes as proof that a record is gone."""

    retryable = False
    default_action = "The record does not exist (or is hidden from the API member); no action needed."

    @property
    def proves_absence(self) -> bool:
        return self.status_code == 404 and self.code == NOT_FOUND_CODE


class ConnectWiseForeignNotFoundError(ConnectWiseError):
    """404 without ConnectWise's NotFound body (an HTML page of a proxy or gateway, another JSON
    shape, "the endpoint does not exist"): nothing is concluded from it; the run fails and is retried."""

    retryable = True
    default_action = (
        "A 404 came back without ConnectWise's NotFound body: check the tenant's site URL, any proxy or "
        "gateway in between and the pinned codebase; nothing was removed, the poller retries on its next cycle."
    )


class ConnectWiseBadRequestError(ConnectWiseError):
    """400 (or another 4xx the client does not special-case): the request itself is wrong."""

    retryable = False
    default_action = "This is a bug in the request the poller built; report it with the logged code/message."


class ConnectWiseThrottledError(ConnectWiseError):
    """429 after the retry budget was spent (or Retry-After longer than the client will wait)."""

    retryable = True
    default_action = (
        "ConnectWise is throttling this tenant: lower requests_per_minute for the tenant or spread "
        "polling; the poller retries on its next cycle."
    )

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ConnectWiseServerError(ConnectWiseError):
    """5xx after the retry budget was spent."""

    retryable = True
    default_action = "ConnectWise is failing; the poller retries on its next cycle. Check ConnectWise status."


class ConnectWiseTransportError(ConnectWiseError):
    """Timeout, connection or TLS failure after the retry budget was spent."""

    retryable = True
    default_action = (
        "ConnectWise could not be reached: check the site name, network/DNS, and TLS settings "
        "(CA bundle) for this tenant; the poller retries on its next cycle."
    )


class ConnectWiseProtocolError(ConnectWiseError):
    """An answer the client cannot use (not JSON, wrong shape, redirect, paging that does not advance)."""

    retryable = False
    default_action = (
        "ConnectWise answered in an unexpected way: check the site/codebase configuration and the pinned "
        "API version for this tenant."
    )
