"""Optional HTTP endpoint for ConnectWise callbacks (webhooks): `POST /callbacks/{tenant_id}`.

A callback is only a hint: after verifying it, the poller re-reads that agreement and its
additions (a `deleted` one is confirmed by a GET answering 404). Its `Entity` is never trusted.

Verification (docs/connectwise.md#callbacks): `x-content-signature` must equal
base64(HMAC-SHA256(key = SHA256(signing_key), msg = raw body)), where `signing_key` is fetched from
the payload's `Metadata.key_url` **only if that URL's host is allowed** (the tenant's site host or
one of its `callback_key_hosts`, HTTPS, or plain HTTP on a loopback host). Keys are cached per URL.

Answers: 202 accepted, 400 unreadable body, 401 bad or missing signature / key host not allowed,
404 unknown tenant. Anything else than an agreement callback is accepted and ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.poller.service import TenantPoller

log = logging.getLogger(__name__)

KEY_TTL_S = 600.0


def expected_signature(body: bytes, signing_key: str) -> str:
    key = hashlib.sha256(signing_key.encode()).digest()
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def signature_valid(body: bytes, signature: str | None, signing_key: str) -> bool:
    """Constant-time check of `x-content-signature` (pure)."""
    if not signature:
        return False
    return hmac.compare_digest(expected_signature(body, signing_key), signature.strip())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_url_allowed(url: str, allowed_hosts: set[str]) -> bool:
    """Whether the poller may fetch a signing key from `url` (pure): allowed host, HTTPS (HTTP only on loopback)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if not host or host not in allowed_hosts or parts.username or parts.password:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host))


@dataclass(frozen=True, slots=True)
class CallbackHint:
    agreement_id: int
    action: str
    key_url: str


def parse_callback(document: Any) -> CallbackHint | str | None:
    """The hint in a callback body; None for a callback the poller ignores (not an agreement);
    a string naming the problem for an unusable body (pure)."""
    if not isinstance(document, dict):
        return "body is not a JSON object"
    if str(document.get("Type", "")).lower() != "agreement":
        return None
    record_id = document.get("ID")
    action = str(document.get("Action", "")).lower()
    metadata = document.get("Metadata")
    key_url = metadata.get("key_url") if isinstance(metadata, dict) else None
    if not isinstance(record_id, int) or isinstance(record_id, bool) or record_id <= 0:
        return "ID is not a positive integer"
    if action not in ("added", "updated", "deleted"):
        return "Action is not added/updated/deleted"
    if not isinstance(key_url, str):
        return "Metadata.key_url is missing"
    return CallbackHint(record_id, action, key_url)


class KeyFetcher:
    """Fetches and caches signing keys (GET key_url with the tenant's `clientId` header)."""

    def __init__(self, http: httpx.AsyncClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._clock = clock
        self._cache: dict[str, tuple[float, str]] = {}

    async def key(self, url: str, client_id: str, *, refresh: bool = False) -> str | None:
        cached = self._cache.get(url)
        if cached is not None and not refresh and self._clock() - cached[0] < KEY_TTL_S:
            return cached[1]
        try:
            response = await self._http.get(url, headers={"clientId": client_id}, follow_redirects=False)
        except httpx.HTTPError as error:
            log.warning("callback key fetch failed", extra={"error": type(error).__name__})
            return None
        if response.status_code != 200:
            log.warning("callback key fetch answered %d", response.status_code)
            return None
        try:
            key = response.json().get("signing_key")
        except (ValueError, AttributeError):
            return None
        if not isinstance(key, str) or not key:
            return None
        self._cache[url] = (self._clock(), key)
        return key


def build_app(
    pollers: Mapping[str, TenantPoller], fetcher: KeyFetcher, client_ids: Mapping[str, str]
) -> Starlette:
    """The callback app; `client_ids` maps tenant id -> its ConnectWise clientId (for key fetches)."""

    async def receive(request: Request) -> Response:
        tenant_id = request.path_params["tenant_id"]
        poller = pollers.get(tenant_id)
        if poller is None:
            return JSONResponse({"error": "unknown tenant"}, status_code=404)
        body = await request.body()
        try:
            document = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        hint = parse_callback(document)
        if isinstance(hint, str):
            return JSONResponse({"error": hint}, status_code=400)
        if hint is None:
            return JSONResponse({"status": "ignored"}, status_code=202)
        allowed = {poller.tenant.site_host, *(h.lower() for h in poller.tenant.callback_key_hosts)}
        if not key_url_allowed(hint.key_url, allowed):
            log.warning(
                "callback names a key_url on a host that is not allowed", extra={"tenant_id": tenant_id}
            )
            return JSONResponse({"error": "key_url host not allowed"}, status_code=401)
        signature = request.headers.get("x-content-signature")
        key = await fetcher.key(hint.key_url, client_ids[tenant_id])
        valid = key is not None and signature_valid(body, signature, key)
        if not valid and key is not None:  # the key may have rotated
            key = await fetcher.key(hint.key_url, client_ids[tenant_id], refresh=True)
            valid = key is not None and signature_valid(body, signature, key)
        if not valid:
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        poller.request_recheck(hint.agreement_id, deleted=hint.action == "deleted")
        log.info(
            "callback accepted",
            extra={"tenant_id": tenant_id, "agreement_id": hint.agreement_id, "action": hint.action},
        )
        return JSONResponse({"status": "accepted"}, status_code=202)

    return Starlette(routes=[Route("/callbacks/{tenant_id}", receive, methods=["POST"])])
