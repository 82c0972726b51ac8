"""`SimControl`: a small synchronous client for the `/_sim` control API (used by tests, benches and the CLI).

Every method returns the decoded JSON answer (None for 204) and raises `SimControlError` on a 4xx/5xx.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx


class SimControlError(RuntimeError):
    """The control API refused a request; `status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class SimControl:
    """Drive a running simulator: data changes, clock, faults, budget, permissions, stats."""

    def __init__(self, site_url: str, *, verify: bool | ssl.SSLContext = True, timeout: float = 60.0) -> None:
        self.site_url = site_url.rstrip("/")
        self._http = httpx.Client(base_url=self.site_url, verify=verify, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SimControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, f"/_sim{path}", json=body)
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise SimControlError(response.status_code, str(message))
        return None if response.status_code == 204 or not response.content else response.json()

    # -- data -----------------------------------------------------------------------------------------
    def add_company(self, **fields: Any) -> dict[str, Any]:
        return dict(self.call("POST", "/companies", fields))

    def create_agreement(self, company_id: int, **fields: Any) -> dict[str, Any]:
        return dict(self.call("POST", "/agreements", {"company_id": company_id, **fields}))

    def update_agreement(self, agreement_id: int, **fields: Any) -> dict[str, Any]:
        return dict(self.call("PATCH", f"/agreements/{agreement_id}", fields))

    def cancel_agreement(self, agreement_id: int, reason: str | None = None) -> dict[str, Any]:
        return dict(
            self.call("POST", f"/agreements/{agreement_id}/cancel", {"reason": reason} if reason else {})
        )

    def delete_agreement(self, agreement_id: int) -> None:
        self.call("DELETE", f"/agreements/{agreement_id}")

    def touch_agreements(self, *, ids: list[int] | None = None, count: int | None = None) -> list[int]:
        body: dict[str, Any] = {"ids": ids} if ids is not None else {"count": count}
        return list(self.call("POST", "/agreements/touch", body)["ids"])

    def create_addition(self, agreement_id: int, **fields: Any) -> dict[str, Any]:
        return dict(self.call("POST", f"/agreements/{agreement_id}/additions", fields))

    def update_addition(self, agreement_id: int, addition_id: int, **fields: Any) -> dict[str, Any]:
        return dict(self.call("PATCH", f"/agreements/{agreement_id}/additions/{addition_id}", fields))

    def cancel_addition(self, agreement_id: int, addition_id: int, date: str | None = None) -> dict[str, Any]:
        body = {"date": date} if date else {}
        return dict(self.call("POST", f"/agreements/{agreement_id}/additions/{addition_id}/cancel", body))

    def delete_addition(self, agreement_id: int, addition_id: int) -> None:
        self.call("DELETE", f"/agreements/{agreement_id}/additions/{addition_id}")

    # -- simulation settings --------------------------------------------------------------------------
    def clock(self, **changes: Any) -> dict[str, Any]:
        """No arguments reads the clock; `set=`, `advance_s=`, `freeze=True/False`, `reset=True` change it."""
        return dict(self.call("POST" if changes else "GET", "/clock", changes or None))

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        return dict(self.call("POST", "/faults", faults))

    def clear_faults(self) -> dict[str, Any]:
        return dict(self.call("DELETE", "/faults"))

    def set_budget(self, requests_per_minute: int, window_s: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"requests_per_minute": requests_per_minute}
        if window_s is not None:
            body["window_s"] = window_s
        return dict(self.call("POST", "/budget", body))

    def set_permissions(self, **granted: bool) -> dict[str, Any]:
        return dict(self.call("POST", "/permissions", granted))

    def reset(self, **overrides: Any) -> dict[str, Any]:
        return dict(self.call("POST", "/reset", overrides))

    def info(self) -> dict[str, Any]:
        return dict(self.call("GET", "/info"))

    def stats(self) -> dict[str, Any]:
        return dict(self.call("GET", "/stats"))

    def reset_stats(self) -> dict[str, Any]:
        return dict(self.call("DELETE", "/stats"))

    def deliveries(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/callbacks/deliveries"))
