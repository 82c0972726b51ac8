"""ConnectWise answers read (pure): JSON of the expected shape, and the error a non-2xx answer means."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from services.poller.connectwise.errors import (
    NOT_FOUND_CODE,
    ConnectWiseAuthenticationError,
    ConnectWiseBadRequestError,
    ConnectWiseError,
    ConnectWiseForeignNotFoundError,
    ConnectWiseNotFoundError,
    ConnectWisePermissionError,
    ConnectWiseProtocolError,
    ConnectWiseServerError,
    ConnectWiseThrottledError,
    permission_for_path,
)
from services.poller.connectwise.transport import loads


def error_from_response(
    method: str,
    path: str,
    response: httpx.Response,
    scrub: Callable[[str], str],
    *,
    retry_after: float | None = None,
) -> ConnectWiseError:
    """The `ConnectWiseError` for a non-2xx answer (pure): its class by status (404: NotFound only with
    ConnectWise's own `NotFound` code), code, message and errors taken from a JSON body, every text
    the server sent passed through `scrub`."""
    status = response.status_code
    code: str | None = None
    message: str | None = None
    errors: list[dict[str, Any]] = []
    try:
        body = loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        raw_code = body.get("code") or body.get("error")
        code = scrub(str(raw_code)) if raw_code is not None else None
        raw_message = body.get("message")
        message = scrub(str(raw_message)) if raw_message is not None else None
        if isinstance(body.get("errors"), list):
            errors = [
                {str(k): scrub(str(v)) for k, v in item.items()}
                for item in body["errors"]
                if isinstance(item, dict)
            ]
    detail = ": ".join(p for p in (code, message) if p) or response.reason_phrase or "no detail"
    common: dict[str, Any] = {
        "method": method,
        "path": path,
        "status_code": status,
        "code": code,
        "cw_message": message,
        "errors": errors,
        "request_id": response.headers.get("x-cw-request-id"),
    }
    if status == 401:
        return ConnectWiseAuthenticationError(f"ConnectWise rejected the credentials ({detail})", **common)
    if status == 403:
        permission = permission_for_path(path)
        return ConnectWisePermissionError(
            f"the API member lacks a permission: grant {permission} ({detail})",
            permission=permission,
            **common,
        )
    if status == 404:
        if code == NOT_FOUND_CODE:
            return ConnectWiseNotFoundError(f"not found ({detail})", **common)
        return ConnectWiseForeignNotFoundError(
            f"404 without ConnectWise's NotFound body ({detail}): not proof of absence", **common
        )
    if status == 429:
        return ConnectWiseThrottledError(
            f"throttled and retries exhausted ({detail})", retry_after=retry_after, **common
        )
    if status >= 500:
        return ConnectWiseServerError(f"server error ({detail})", **common)
    if 300 <= status < 400:
        return ConnectWiseProtocolError(
            f"unexpected redirect (HTTP {status}); redirects are not followed", **common
        )
    return ConnectWiseBadRequestError(f"ConnectWise rejected the request ({detail})", **common)


def parse_json(response: httpx.Response, method: str, path: str) -> Any:
    """The answer's JSON; `ConnectWiseProtocolError` when it is not JSON."""
    try:
        return loads(response.content)
    except ValueError:
        raise ConnectWiseProtocolError(
            f"answer is not JSON (content-type {response.headers.get('content-type')!r})",
            method=method,
            path=path,
            status_code=response.status_code,
        ) from None


def json_list(response: httpx.Response, path: str) -> list[dict[str, Any]]:
    """A list endpoint's answer: a JSON array of objects, else `ConnectWiseProtocolError`."""
    data = parse_json(response, "GET", path)
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise ConnectWiseProtocolError(
            "list endpoint did not answer a JSON array of objects", method="GET", path=path
        )
    return data


def json_object(response: httpx.Response, method: str, path: str) -> dict[str, Any]:
    """A JSON object answer, else `ConnectWiseProtocolError`."""
    data = parse_json(response, method, path)
    if not isinstance(data, dict):
        raise ConnectWiseProtocolError("endpoint did not answer a JSON object", method=method, path=path)
    return data
