"""Optional HTTP endpoint for ConnectWise callbacks (webhooks): `POST /callbacks/{tenant_id}`.

A callback is only a hint: after verifying it, the poller re-reads that agreement and its
additions (a `deleted` one is confirmed by ConnectWise's NotFound). Its `Entity` is never trusted.

Verification (docs/connectwise.md#callbacks): `x-content-signature` must equal
base64(HMAC-SHA256(key = SHA256(signing_key), msg = raw body)), where `signing_key` is fetched from
the payload's `Metadata.key_url` **only if that URL is pinned to the tenant**: an allowed host (the
tenant's site host or one of its `callback_key_hosts`; HTTPS, or plain HTTP on a loopback host), the
`/system/callbackkey/index.rails` path and `companyName` = the tenant's ConnectWise company.

Bounded, whatever the senders do:
- bodies over `MAX_BODY_BYTES` (64 KB) answer 413 (read in chunks, never whole), a body not sent
  within `BODY_TIMEOUT_S` answers 408;
- per source address and per tenant a token bucket (`RateLimiter`): 429 with `Retry-After`;
- signing keys in an LRU cache of `KEY_CACHE_SIZE` URLs; a URL is fetched at most once per
  `KEY_REFETCH_S` (a bad signature does not trigger a fetch within it, a failed fetch counts);
- accepted hints are coalesced per agreement in a bounded set (`TenantPoller.request_recheck`).

Any replica answers for any configured tenant (`route`): a hint of a tenant polled here is queued
directly, one of another shard's tenant is published to `sync.commands.v1` as a refresh command
naming the agreement, which the owning shard's command consumer queues.

Answers: 202 accepted, 400 unreadable body, 401 bad or missing signature / key URL not pinned to the
tenant, 404 unknown tenant, 408 body too slow, 413 body too large, 429 rate-limited. Anything else
than an agreement callback is accepted and ignored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.poller.service import TenantPoller
from services.poller.tenants import TenantConfig

log = logging.getLogger(__name__)

KEY_TTL_S = 600.0
KEY_REFETCH_S = 60.0
"""A key URL is fetched at most once per this many seconds (also after a failed fetch)."""
KEY_CACHE_SIZE = 256
MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT_S = 5.0
SOURCE_RATE_PER_S, SOURCE_BURST = 20.0, 40.0
TENANT_RATE_PER_S, TENANT_BURST = 50.0, 200.0
LIMITED_KEYS = 10_000
"""Most sources (and tenants) a rate limiter tracks; the least recently seen are forgotten first."""
KEY_PATH = "/system/callbackkey/index.rails"


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


def key_url_pinned(url: str, allowed_hosts: set[str], company_id: str) -> bool:
    """`key_url_allowed`, and the URL is ConnectWise's callback key endpoint of the tenant's own
    company (`.../system/callbackkey/index.rails?companyName={company_id}&id=...`) (pure)."""
    if not key_url_allowed(url, allowed_hosts):
        return False
    parts = urlsplit(url)
    if not parts.path.lower().endswith(KEY_PATH):
        return False
    names = parse_qs(parts.query).get("companyName", [])
    return len(names) == 1 and names[0].lower() == company_id.lower()


class RateLimiter:
    """Token buckets per key (a source address, a tenant), `LIMITED_KEYS` at most (LRU)."""

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate_per_s, burst, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """0 when allowed (one token taken), else the seconds until a token is free."""
        now = self._clock()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[key] = (tokens - 1 if wait == 0 else tokens, now)
        while len(self._buckets) > LIMITED_KEYS:
            self._buckets.popitem(last=False)
        return wait


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
    """Fetches and caches signing keys (GET key_url with the tenant's `clientId` header).

    The cache is an LRU of `KEY_CACHE_SIZE` URLs; a URL is fetched at most once per
    `KEY_REFETCH_S` seconds, whatever asks (`refresh` after a bad signature included)."""

    def __init__(self, http: httpx.AsyncClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self.fetches = 0

    def _cached(self, url: str) -> tuple[float, str | None] | None:
        entry = self._cache.get(url)
        if entry is not None:
            self._cache.move_to_end(url)
        return entry

    async def key(self, url: str, client_id: str, *, refresh: bool = False) -> str | None:
        cached = self._cached(url)
        now = self._clock()
        if cached is not None:
            age = now - cached[0]
            if age < KEY_REFETCH_S or (not refresh and age < KEY_TTL_S and cached[1] is not None):
                return cached[1]
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:  # concurrent misses of one URL share one fetch
            cached = self._cached(url)
            if cached is not None and self._clock() - cached[0] < KEY_REFETCH_S:
                return cached[1]
            key = await self._fetch(url, client_id)
            self._cache[url] = (self._clock(), key)
            while len(self._cache) > KEY_CACHE_SIZE:
                old, _ = self._cache.popitem(last=False)
                self._locks.pop(old, None)
        return key

    async def _fetch(self, url: str, client_id: str) -> str | None:
        self.fetches += 1
        try:
            response = await self._http.get(url, headers={"clientId": client_id}, follow_redirects=False)
        except httpx.HTTPError as error:
            log.warning("callback key fetch failed", extra={"error": type(error).__name__})
            return None
        if response.status_code != 200 or len(response.content) > MAX_BODY_BYTES:
            log.warning("callback key fetch answered %d", response.status_code)
            return None
        try:
            key = response.json().get("signing_key")
        except (ValueError, AttributeError):
            return None
        return key if isinstance(key, str) and key else None


class BodyTooLarge(Exception):
    pass


async def read_capped(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused (`BodyTooLarge`) as soon as it exceeds `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


Forward = Callable[[str, int, bool], Awaitable[None]]
"""Hands a verified hint of a tenant polled by another shard to that shard (tenant, agreement, deleted)."""


def build_app(
    pollers: Mapping[str, TenantPoller],
    fetcher: KeyFetcher,
    client_ids: Mapping[str, str],
    *,
    tenants: Mapping[str, TenantConfig] | None = None,
    forward: Forward | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """The callback app.

    `pollers`: this replica's tenants; `tenants`: every configured tenant (default: `pollers`'), each
    answered here; `client_ids`: tenant id -> its ConnectWise clientId (for key fetches), for every
    tenant answered; `forward`: how a hint of a tenant polled elsewhere reaches its shard."""
    configured: dict[str, TenantConfig] = (
        dict(tenants) if tenants is not None else {t: p.tenant for t, p in pollers.items()}
    )
    by_source = RateLimiter(SOURCE_RATE_PER_S, SOURCE_BURST, clock)
    by_tenant = RateLimiter(TENANT_RATE_PER_S, TENANT_BURST, clock)

    def limited(wait: float, what: str) -> Response:
        return JSONResponse(
            {"error": f"too many callbacks from this {what}"},
            status_code=429,
            headers={"Retry-After": str(max(1, int(wait + 0.999)))},
        )

    async def receive(request: Request) -> Response:
        tenant_id = request.path_params["tenant_id"]
        source = request.client.host if request.client is not None else "?"
        wait = by_source.take(source)
        if wait:
            return limited(wait, "source")
        tenant = configured.get(tenant_id)
        if tenant is None or tenant_id not in client_ids:
            return JSONResponse({"error": "unknown tenant"}, status_code=404)
        wait = by_tenant.take(tenant_id)
        if wait:
            return limited(wait, "tenant")
        try:
            body = await asyncio.wait_for(read_capped(request), BODY_TIMEOUT_S)
        except BodyTooLarge:
            return JSONResponse({"error": f"body larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
        except TimeoutError:
            return JSONResponse({"error": "body not received in time"}, status_code=408)
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        hint = parse_callback(document)
        if isinstance(hint, str):
            return JSONResponse({"error": hint}, status_code=400)
        if hint is None:
            return JSONResponse({"status": "ignored"}, status_code=202)
        allowed = {tenant.site_host, *(h.lower() for h in tenant.callback_key_hosts)}
        if not key_url_pinned(hint.key_url, allowed, tenant.company_id):
            log.warning(
                "callback names a key_url not pinned to the tenant's company", extra={"tenant_id": tenant_id}
            )
            return JSONResponse({"error": "key_url not allowed"}, status_code=401)
        signature = request.headers.get("x-content-signature")
        key = await fetcher.key(hint.key_url, client_ids[tenant_id])
        valid = key is not None and signature_valid(body, signature, key)
        if (
            not valid and key is not None
        ):  # the key may have rotated (fetched again at most once per interval)
            key = await fetcher.key(hint.key_url, client_ids[tenant_id], refresh=True)
            valid = key is not None and signature_valid(body, signature, key)
        if not valid:
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        deleted = hint.action == "deleted"
        poller = pollers.get(tenant_id)
        if poller is not None:
            poller.request_recheck(hint.agreement_id, deleted=deleted)
        elif forward is not None:
            await forward(tenant_id, hint.agreement_id, deleted)
        else:
            return JSONResponse({"error": "tenant not polled by this replica"}, status_code=503)
        log.info(
            "callback accepted",
            extra={
                "tenant_id": tenant_id,
                "agreement_id": hint.agreement_id,
                "action": hint.action,
                "forwarded": poller is None,
            },
        )
        return JSONResponse({"status": "accepted"}, status_code=202)

    return Starlette(routes=[Route("/callbacks/{tenant_id}", receive, methods=["POST"])])
