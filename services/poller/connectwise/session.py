"""Sends requests to one ConnectWise site (`ConnectWiseSession`): auth, codebase, rate limit, retries.

Contract:
* Every request carries Basic auth `company+publicKey:privateKey`, the `clientId` header and a
  pinned `Accept: application/vnd.connectwise.com+json; version=<api_version>`.
* The codebase comes from the configuration or from `/login/companyinfo/{company}` (cached); an API
  404 triggers one re-discovery (at most once a minute) and, if the codebase moved, one retry.
* Every request first takes a token from the tenant's rate limiter.
* Idempotent requests are retried with exponential backoff and jitter on 5xx, timeouts and
  connection errors; a 429 waits `Retry-After` (and pauses the whole tenant's limiter for that
  long) or backs off. Attempts are bounded (`max_attempts`). A POST is retried only when it
  cannot have reached the server (connection errors) or was throttled (429).
* Failures surface as `ConnectWiseError` subclasses (see `errors`); nothing else escapes.
* Redirects are never followed (credentials must not follow a `Location`), `Link` URLs are never
  requested: paging numbers are read out of them.
* Credentials never appear in logs, errors or reprs; text the server sends back is scrubbed of
  them before it is logged or stored in an error.
* Counters (`stats`) count every HTTP request sent, every 429 received, and every retry; the same
  numbers go to the shared Prometheus metrics `contract_sync_connectwise_{requests,throttled,retries}_total`
  (label `tenant` = `tenant_id`, else the company id; requests also by `status`, or `transport_error`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from services.common.metrics import CW_REQUESTS, CW_RETRIES, CW_THROTTLED
from services.poller.connectwise.config import ConnectWiseConnection
from services.poller.connectwise.errors import (
    ConnectWiseForeignNotFoundError,
    ConnectWiseNotFoundError,
    ConnectWiseProtocolError,
    ConnectWiseTransportError,
)
from services.poller.connectwise.models import CompanyInfo
from services.poller.connectwise.ratelimit import TokenBucket
from services.poller.connectwise.responses import error_from_response, parse_json
from services.poller.connectwise.retry import RETRYABLE_STATUS, RetryPolicy, parse_retry_after
from services.poller.connectwise.stats import ClientStats
from services.poller.connectwise.transport import new_transport, request_not_sent

logger = logging.getLogger(__name__)

API_PREFIX = "apis/3.0"
CODEBASE_REFRESH_INTERVAL = 60.0
_CODEBASE_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+/$")

Sleep = Callable[[float], Awaitable[None]]


class ConnectWiseSession:
    """The request plumbing of one tenant's ConnectWise client (see the module docstring); the
    client (`client.ConnectWiseClient`) builds the endpoints on `send`. Safe to share between
    tasks of one event loop."""

    def __init__(
        self,
        connection: ConnectWiseConnection,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rate_limiter: TokenBucket | None = None,
        retry_policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        tenant_id: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._connection = connection
        self.tenant_id = tenant_id
        self._metric_tenant = tenant_id or connection.company_id
        self.stats = ClientStats()
        self._sleep = sleep
        self._rng = rng
        self._clock = clock
        self.retry_policy = retry_policy or RetryPolicy(
            max_attempts=connection.max_attempts,
            initial_delay=connection.backoff_initial,
            max_delay=connection.backoff_max,
            max_retry_after=connection.max_retry_after,
        )
        self.rate_limiter = rate_limiter or TokenBucket(
            connection.requests_per_minute * (1.0 - connection.rate_limit_headroom),
            burst=connection.rate_limit_burst,
            clock=clock,
            sleep=sleep,
        )
        self._codebase: str | None = connection.codebase
        self._discovers_codebase = connection.codebase is None
        self._codebase_checked_at: float | None = None
        self._discovery_lock = asyncio.Lock()
        # at most max_connections requests inside httpx; the rest wait here, not in httpcore's queue
        self._in_flight = asyncio.Semaphore(connection.max_connections)
        self._secrets = tuple(
            s
            for s in (
                connection.public_key.get_secret_value(),
                connection.private_key.get_secret_value(),
                connection.client_id.get_secret_value(),
                self._basic_token(),
            )
            if len(s) >= 3
        )
        verify = ssl_context if ssl_context is not None else self._verify_setting(connection)
        timeout = httpx.Timeout(
            connect=connection.connect_timeout,
            read=connection.read_timeout,
            write=connection.write_timeout,
            pool=connection.pool_timeout,
        )
        self._http = httpx.AsyncClient(
            transport=transport or new_transport(verify=verify, max_connections=connection.max_connections),
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": "contract-sync-poller/0.1"},
        )

    async def aclose(self) -> None:
        """Close the connection pool (idempotent)."""
        await self._http.aclose()

    @property
    def connection(self) -> ConnectWiseConnection:
        return self._connection

    @property
    def codebase(self) -> str | None:
        """The codebase in use (`v2025_1/`), None until discovered."""
        return self._codebase

    @staticmethod
    def _verify_setting(connection: ConnectWiseConnection) -> ssl.SSLContext | bool:
        if connection.ca_bundle is not None:
            return ssl.create_default_context(cafile=str(connection.ca_bundle))
        return connection.verify_tls

    def _basic_token(self) -> str:
        c = self._connection
        raw = f"{c.company_id}+{c.public_key.get_secret_value()}:{c.private_key.get_secret_value()}"
        return base64.b64encode(raw.encode()).decode("ascii")

    def _headers(self, *, authenticated: bool, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {
            "Accept": f"application/vnd.connectwise.com+json; version={self._connection.api_version}",
            "clientId": self._connection.client_id.get_secret_value(),
        }
        if authenticated:
            headers["Authorization"] = "Basic " + self._basic_token()
        if extra:
            headers.update(extra)
        return headers

    def scrub(self, text: str) -> str:
        """`text` with every credential of this connection replaced by `[redacted]`."""
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    async def api_base(self) -> str:
        """`{origin}/{codebase}apis/3.0`, discovering the codebase first when needed."""
        if self._codebase is None:
            async with self._discovery_lock:
                if self._codebase is None:
                    await self._discover_codebase()
        assert self._codebase is not None
        return f"{self._connection.origin}/{self._codebase}{API_PREFIX}"

    async def company_info(self) -> CompanyInfo:
        """`GET /login/companyinfo/{company}` (sent without Basic auth, as ConnectWise's clients do)."""
        try:
            response = await self.send(
                "GET", f"/login/companyinfo/{self._connection.company_id}", api=False, authenticated=False
            )
        except (ConnectWiseNotFoundError, ConnectWiseForeignNotFoundError) as error:
            raise ConnectWiseProtocolError(
                f"companyinfo does not know company {self._connection.company_id!r} ({error.message})",
                method="GET",
                path="/login/companyinfo",
                status_code=404,
                operator_action="Check the tenant's ConnectWise site and company id (the login company).",
            ) from None
        data = parse_json(response, "GET", "/login/companyinfo")
        if not isinstance(data, dict):
            raise ConnectWiseProtocolError(
                "companyinfo did not answer a JSON object", path="/login/companyinfo"
            )
        return CompanyInfo.model_validate(data)

    async def _discover_codebase(self) -> str:
        info = await self.company_info()
        codebase = (info.Codebase or "").strip().lstrip("/")
        if codebase and not codebase.endswith("/"):
            codebase += "/"
        if not _CODEBASE_PATTERN.match(codebase) or ".." in codebase:
            raise ConnectWiseProtocolError(
                f"companyinfo for company {self._connection.company_id!r} returned no usable codebase",
                method="GET",
                path="/login/companyinfo",
                operator_action="Check the tenant's ConnectWise site and company id (the login company).",
            )
        if codebase != self._codebase:
            logger.info("connectwise codebase for %s is %s", self._connection.company_id, codebase)
        self._codebase = codebase
        self._codebase_checked_at = self._clock()
        return codebase

    async def _refresh_codebase_after_404(self) -> bool:
        """Re-discover the codebase (at most once per interval); True if it changed."""
        if not self._discovers_codebase:
            return False
        async with self._discovery_lock:
            checked = self._codebase_checked_at
            if checked is not None and self._clock() - checked < CODEBASE_REFRESH_INTERVAL:
                return False
            before = self._codebase
            self.stats.codebase_refreshes += 1
            await self._discover_codebase()
            return self._codebase != before

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        api: bool = True,
        authenticated: bool = True,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send one logical request with rate limiting, retries and error mapping; 2xx or raise."""
        policy = self.retry_policy
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            waited = await self.rate_limiter.acquire()
            self.stats.rate_limit_wait_seconds += waited
            url = (await self.api_base() if api else self._connection.origin) + path
            started = time.perf_counter()
            self.stats.requests += 1
            try:
                async with self._in_flight:
                    response = await self._http.request(
                        method,
                        url,
                        params=dict(params) if params else None,
                        json=json_body,
                        headers=self._headers(authenticated=authenticated, extra=headers),
                    )
                    await response.aread()
            except httpx.HTTPError as exc:
                CW_REQUESTS.labels(self._metric_tenant, "transport_error").inc()
                may_retry = idempotent or request_not_sent(exc)
                if may_retry and attempt < policy.max_attempts:
                    delay = policy.backoff(attempt, self._rng)
                    logger.warning(
                        "connectwise %s %s failed (%s); retry %d in %.2fs",
                        method,
                        path,
                        type(exc).__name__,
                        attempt,
                        delay,
                    )
                    self.stats.retries += 1
                    CW_RETRIES.labels(self._metric_tenant).inc()
                    await self._sleep(delay)
                    continue
                self.stats.failures += 1
                raise ConnectWiseTransportError(
                    f"{type(exc).__name__}: {self.scrub(str(exc)) or 'no detail'} after {attempt} attempt(s)",
                    method=method,
                    path=path,
                ) from None
            elapsed = time.perf_counter() - started
            status = response.status_code
            CW_REQUESTS.labels(self._metric_tenant, str(status)).inc()
            logger.debug("connectwise %s %s -> %d in %.3fs", method, path, status, elapsed)
            if 200 <= status < 300:
                return response
            if status == 429:
                self.stats.throttled += 1
                CW_THROTTLED.labels(self._metric_tenant).inc()
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if attempt < policy.max_attempts and (
                    retry_after is None or retry_after <= policy.max_retry_after
                ):
                    delay = retry_after if retry_after is not None else policy.backoff(attempt, self._rng)
                    self.rate_limiter.pause_for(delay)
                    logger.warning(
                        "connectwise throttled %s %s (Retry-After %s); retry %d in %.2fs",
                        method,
                        path,
                        retry_after,
                        attempt,
                        delay,
                    )
                    self.stats.retries += 1
                    CW_RETRIES.labels(self._metric_tenant).inc()
                    await self._sleep(delay)
                    continue
                self.stats.failures += 1
                raise error_from_response(method, path, response, self.scrub, retry_after=retry_after)
            if status in RETRYABLE_STATUS and idempotent and attempt < policy.max_attempts:
                delay = policy.backoff(attempt, self._rng)
                server_hint = parse_retry_after(response.headers.get("Retry-After"))
                if server_hint is not None:  # e.g. 503 during maintenance: wait as told, within the cap
                    delay = max(delay, min(server_hint, policy.max_retry_after))
                logger.warning(
                    "connectwise %s %s answered %d; retry %d in %.2fs", method, path, status, attempt, delay
                )
                self.stats.retries += 1
                CW_RETRIES.labels(self._metric_tenant).inc()
                await self._sleep(delay)
                continue
            if status == 404 and api and not refreshed:
                refreshed = True
                if await self._refresh_codebase_after_404():
                    attempt -= 1  # a moved codebase is not a failed attempt
                    continue
            self.stats.failures += 1
            raise error_from_response(method, path, response, self.scrub)
