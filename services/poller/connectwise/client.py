"""Async ConnectWise Manage API client (httpx) used by the poller.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import httpx

from services.common.metrics import CW_REQUESTS, CW_RETRIES, CW_THROTTLED
from services.poller.connectwise import conditions as cond
from services.poller.connectwise.config import ConnectWiseConnection
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
    ConnectWiseTransportError,
    permission_for_path,
)
from services.poller.connectwise.models import (
    Addition,
    Agreement,
    CallbackEntry,
    Company,
    CompanyInfo,
    CwModel,
    SystemInfo,
)
from services.poller.connectwise.paging import (
    DEFAULT_PAGE_SIZE,
    Paging,
    forward_only_next_page_id,
    navigable_has_more,
    parse_link_header,
    validate_page_size,
)
from services.poller.connectwise.ratelimit import TokenBucket
from services.poller.connectwise.retry import RETRYABLE_STATUS, RetryPolicy, parse_retry_after
from services.poller.connectwise.transport import loads, new_transport, request_not_sent

logger = logging.getLogger(__name__)

API_PREFIX = "apis/3.0"
CODEBASE_REFRESH_INTERVAL = 60.0
_CODEBASE_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+/$")
_ORDER_BY_PATTERN = re.compile(r"^\s*(?P<field>[A-Za-z_][A-Za-z0-9_/]*)(?:\s+(?P<dir>asc|desc))?\s*$", re.I)

M = TypeVar("M", bound=CwModel)
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """Counters at one instant; subtract two snapshots to get one poll's numbers."""

    requests: int = 0
    throttled: int = 0
    retries: int = 0
    failures: int = 0
    codebase_refreshes: int = 0
    rate_limit_wait_seconds: float = 0.0

    def __sub__(self, other: StatsSnapshot) -> StatsSnapshot:
        return StatsSnapshot(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class ClientStats:
    """Mutable counters owned by one client (read them via `snapshot()`)."""

    def __init__(self) -> None:
        self.requests = 0
        self.throttled = 0
        self.retries = 0
        self.failures = 0
        self.codebase_refreshes = 0
        self.rate_limit_wait_seconds = 0.0

    def snapshot(self) -> StatsSnapshot:
        return StatsSnapshot(
            requests=self.requests,
            throttled=self.throttled,
            retries=self.retries,
            failures=self.failures,
            codebase_refreshes=self.codebase_refreshes,
            rate_limit_wait_seconds=self.rate_limit_wait_seconds,
        )

    def __repr__(self) -> str:
        return f"ClientStats({self.snapshot().as_dict()!r})"


def render_order_by(order_by: str | Sequence[str]) -> str:
    """Validate and render `orderBy` (`"id asc"`, `["company/id asc", "id"]`)."""
    items = [order_by] if isinstance(order_by, str) else list(order_by)
    if not items:
        raise cond.ConditionError("order_by must not be empty")
    rendered = []
    for item in items:
        match = _ORDER_BY_PATTERN.match(item)
        if not match:
            raise cond.ConditionError(f"invalid orderBy {item!r}")
        field = cond.validate_field(match["field"])
        direction = (match["dir"] or "asc").lower()
        rendered.append(f"{field} {direction}")
    return ", ".join(rendered)


def _positive_id(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        raise ValueError(f"{what} must be a positive int32, got {value!r}")
    return value


class ConnectWiseClient:
    """One tenant's connection to ConnectWise. Use as `async with ConnectWiseClient(conn) as cw:`.

    Safe to share between tasks of one event loop. `transport=` injects an httpx transport
    (e.g. `httpx.MockTransport` in unit tests); `ssl_context=` overrides `verify_tls`/`ca_bundle`;
    `rate_limiter=` shares a limiter between clients
    of the same tenant; `sleep`/`rng` make retry timing deterministic in tests.
    """

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

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> ConnectWiseClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (idempotent)."""
        await self._http.aclose()

    def __repr__(self) -> str:
        return (
            f"ConnectWiseClient(site={self._connection.site!r}, company_id={self._connection.company_id!r}, "
            f"codebase={self._codebase!r}, tenant_id={self.tenant_id!r})"
        )

    __str__ = __repr__

    @property
    def connection(self) -> ConnectWiseConnection:
        return self._connection

    @property
    def codebase(self) -> str | None:
        """The codebase in use (`v2025_1/`), None until discovered."""
        return self._codebase

    # -- request plumbing -------------------------------------------------------------------------

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

    async def _api_base(self) -> str:
        if self._codebase is None:
            async with self._discovery_lock:
                if self._codebase is None:
                    await self._discover_codebase()
        assert self._codebase is not None
        return f"{self._connection.origin}/{self._codebase}{API_PREFIX}"

    async def company_info(self) -> CompanyInfo:
        """`GET /login/companyinfo/{company}` (sent without Basic auth, as ConnectWise's clients do)."""
        try:
            response = await self._send(
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
        data = self._json(response, "GET", "/login/companyinfo")
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

    async def _send(
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
            url = (await self._api_base() if api else self._connection.origin) + path
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
                raise self._error_from_response(method, path, response, retry_after=retry_after)
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
            raise self._error_from_response(method, path, response)

    def _error_from_response(
        self, method: str, path: str, response: httpx.Response, *, retry_after: float | None = None
    ) -> ConnectWiseError:
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
            code = self.scrub(str(raw_code)) if raw_code is not None else None
            raw_message = body.get("message")
            message = self.scrub(str(raw_message)) if raw_message is not None else None
            if isinstance(body.get("errors"), list):
                errors = [
                    {str(k): self.scrub(str(v)) for k, v in item.items()}
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
            return ConnectWiseAuthenticationError(
                f"ConnectWise rejected the credentials ({detail})", **common
            )
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

    def _json(self, response: httpx.Response, method: str, path: str) -> Any:
        try:
            return loads(response.content)
        except ValueError:
            raise ConnectWiseProtocolError(
                f"answer is not JSON (content-type {response.headers.get('content-type')!r})",
                method=method,
                path=path,
                status_code=response.status_code,
            ) from None

    def _json_list(self, response: httpx.Response, path: str) -> list[dict[str, Any]]:
        data = self._json(response, "GET", path)
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise ConnectWiseProtocolError(
                "list endpoint did not answer a JSON array of objects", method="GET", path=path
            )
        return data

    def _json_object(self, response: httpx.Response, method: str, path: str) -> dict[str, Any]:
        data = self._json(response, method, path)
        if not isinstance(data, dict):
            raise ConnectWiseProtocolError("endpoint did not answer a JSON object", method=method, path=path)
        return data

    # -- generic reads ---------------------------------------------------------------------------

    async def get_json(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        """GET `path` (below `/apis/3.0`) and return its JSON (for endpoints without a helper)."""
        response = await self._send("GET", path, params=params)
        return self._json(response, "GET", path)

    async def iter_pages(
        self,
        path: str,
        *,
        conditions: cond.Condition | None = None,
        fields: Sequence[str] | None = None,
        order_by: str | Sequence[str] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        paging: Paging | str = Paging.NAVIGABLE,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield the pages (lists of JSON objects) of a list endpoint until the last one.

        Navigable: page 1, 2, ... until a short/empty page or a `Link` without `next`.
        Forward-only: `pageId` cursor (`orderBy` is refused: ConnectWise orders by id).
        Raises `ConnectWiseProtocolError` if the server repeats a page instead of advancing.
        """
        validate_page_size(page_size)
        mode = Paging(paging)
        base: dict[str, str | int] = {"pageSize": page_size}
        rendered = cond.render(conditions)
        if rendered:
            base["conditions"] = rendered
        if fields:
            base["fields"] = ",".join(cond.validate_field(f) for f in fields)
        if mode is Paging.FORWARD_ONLY:
            if order_by:
                raise ValueError("forward-only paging does not allow orderBy (results are ordered by id)")
            async for rows in self._forward_only(path, base, page_size):
                yield rows
            return
        if order_by:
            base["orderBy"] = render_order_by(order_by)
        page = 1
        previous: list[dict[str, Any]] | None = None
        while True:
            response = await self._send("GET", path, params={**base, "page": page})
            rows = self._json_list(response, path)
            if previous is not None and rows and rows == previous:
                raise ConnectWiseProtocolError(
                    f"page {page} repeated page {page - 1}; the server ignores paging",
                    method="GET",
                    path=path,
                )
            if rows:
                yield rows
            link_header = response.headers.get("Link")
            if not navigable_has_more(
                rows, page_size, parse_link_header(link_header), link_header is not None
            ):
                return
            previous = rows
            page += 1

    async def _forward_only(
        self, path: str, base: dict[str, str | int], page_size: int
    ) -> AsyncIterator[list[dict[str, Any]]]:
        page_id: int | None = None
        headers = {"pagination-type": "forward-only"}
        while True:
            params = dict(base)
            if page_id is not None:
                params["pageId"] = page_id
            response = await self._send("GET", path, params=params, headers=headers)
            rows = self._json_list(response, path)
            if rows:
                yield rows
            next_id = forward_only_next_page_id(
                rows, page_size, parse_link_header(response.headers.get("Link"))
            )
            if next_id is None:
                return
            if page_id is not None and next_id <= page_id:
                raise ConnectWiseProtocolError(
                    f"forward-only paging did not advance (pageId {page_id} -> {next_id})",
                    method="GET",
                    path=path,
                )
            page_id = next_id

    async def _iter_models(
        self,
        model: type[M],
        path: str,
        conditions: cond.Condition | None,
        fields: Sequence[str] | None,
        order_by: str | Sequence[str] | None,
        page_size: int,
        paging: Paging | str,
    ) -> AsyncIterator[M]:
        async for rows in self.iter_pages(
            path, conditions=conditions, fields=fields, order_by=order_by, page_size=page_size, paging=paging
        ):
            for row in rows:
                yield model.from_json(row)

    async def _get_model(self, model: type[M], path: str, fields: Sequence[str] | None = None) -> M:
        params = {"fields": ",".join(cond.validate_field(f) for f in fields)} if fields else None
        response = await self._send("GET", path, params=params)
        return model.from_json(self._json_object(response, "GET", path))

    async def _count(self, path: str, conditions: cond.Condition | None) -> int:
        rendered = cond.render(conditions)
        response = await self._send("GET", path, params={"conditions": rendered} if rendered else None)
        data = self._json_object(response, "GET", path)
        count = data.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConnectWiseProtocolError(
                "count endpoint did not answer {count: int}", method="GET", path=path
            )
        return count

    # -- agreements ------------------------------------------------------------------------------

    def list_agreements(
        self,
        conditions: cond.Condition | None = None,
        *,
        fields: Sequence[str] | None = None,
        order_by: str | Sequence[str] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        paging: Paging | str = Paging.NAVIGABLE,
    ) -> AsyncIterator[Agreement]:
        """Every agreement matching `conditions`, across all pages."""
        return self._iter_models(
            Agreement, "/finance/agreements", conditions, fields, order_by, page_size, paging
        )

    async def get_agreement(self, agreement_id: int, *, fields: Sequence[str] | None = None) -> Agreement:
        """One agreement; `ConnectWiseNotFoundError` if it does not exist (deletion evidence)."""
        return await self._get_model(
            Agreement, f"/finance/agreements/{_positive_id(agreement_id, 'agreement_id')}", fields
        )

    async def count_agreements(self, conditions: cond.Condition | None = None) -> int:
        """`/finance/agreements/count` with the same conditions."""
        return await self._count("/finance/agreements/count", conditions)

    # -- additions -------------------------------------------------------------------------------

    def list_additions(
        self,
        agreement_id: int,
        conditions: cond.Condition | None = None,
        *,
        fields: Sequence[str] | None = None,
        order_by: str | Sequence[str] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        paging: Paging | str = Paging.NAVIGABLE,
    ) -> AsyncIterator[Addition]:
        """Every addition of one agreement matching `conditions`."""
        path = f"/finance/agreements/{_positive_id(agreement_id, 'agreement_id')}/additions"
        return self._iter_models(Addition, path, conditions, fields, order_by, page_size, paging)

    async def get_addition(
        self, agreement_id: int, addition_id: int, *, fields: Sequence[str] | None = None
    ) -> Addition:
        """One addition; `ConnectWiseNotFoundError` if it (or its agreement) does not exist."""
        path = (
            f"/finance/agreements/{_positive_id(agreement_id, 'agreement_id')}"
            f"/additions/{_positive_id(addition_id, 'addition_id')}"
        )
        return await self._get_model(Addition, path, fields)

    async def count_additions(self, agreement_id: int, conditions: cond.Condition | None = None) -> int:
        path = f"/finance/agreements/{_positive_id(agreement_id, 'agreement_id')}/additions/count"
        return await self._count(path, conditions)

    # -- companies -------------------------------------------------------------------------------

    def list_companies(
        self,
        conditions: cond.Condition | None = None,
        *,
        fields: Sequence[str] | None = None,
        order_by: str | Sequence[str] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        paging: Paging | str = Paging.NAVIGABLE,
    ) -> AsyncIterator[Company]:
        return self._iter_models(
            Company, "/company/companies", conditions, fields, order_by, page_size, paging
        )

    async def get_company(self, company_id: int, *, fields: Sequence[str] | None = None) -> Company:
        return await self._get_model(
            Company, f"/company/companies/{_positive_id(company_id, 'company_id')}", fields
        )

    async def count_companies(self, conditions: cond.Condition | None = None) -> int:
        return await self._count("/company/companies/count", conditions)

    # -- system ----------------------------------------------------------------------------------

    async def system_info(self) -> SystemInfo:
        """`/system/info`: a cheap authenticated health check."""
        response = await self._send("GET", "/system/info")
        return SystemInfo.from_json(self._json_object(response, "GET", "/system/info"))

    def list_callbacks(
        self, conditions: cond.Condition | None = None, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[CallbackEntry]:
        return self._iter_models(
            CallbackEntry, "/system/callbacks", conditions, None, None, page_size, Paging.NAVIGABLE
        )

    async def create_callback(
        self,
        url: str,
        *,
        type: str = "agreement",
        level: str = "owner",
        object_id: int = 1,
        description: str | None = None,
        inactive: bool = False,
        self_suppressed: bool = True,
        payload_version: str | None = None,
    ) -> CallbackEntry:
        """Register a callback (not retried on 5xx: it may have been created)."""
        if not url.lower().startswith(("https://", "http://")):
            raise ValueError("callback url must be http(s)")
        if description is not None and len(description) > 100:
            raise ValueError("callback description is at most 100 characters")
        body: dict[str, Any] = {
            "url": url,
            "objectId": object_id,
            "type": type,
            "level": level,
            "inactiveFlag": inactive,
            "isSelfSuppressedFlag": self_suppressed,
        }
        if description is not None:
            body["description"] = description
        if payload_version is not None:
            body["payloadVersion"] = payload_version
        response = await self._send("POST", "/system/callbacks", json_body=body, idempotent=False)
        return CallbackEntry.from_json(self._json_object(response, "POST", "/system/callbacks"))

    async def delete_callback(self, callback_id: int) -> None:
        """Delete a callback; `ConnectWiseNotFoundError` if it does not exist."""
        await self._send("DELETE", f"/system/callbacks/{_positive_id(callback_id, 'callback_id')}")
