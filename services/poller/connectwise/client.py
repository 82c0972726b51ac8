"""Async ConnectWise Manage API client used by the poller (`ConnectWiseClient`): the endpoints it reads
and writes, with paging and typed models.

Requests go through `session.ConnectWiseSession` (auth headers, codebase discovery, rate limit,
retries, error mapping: its module docstring states the contract); answers are checked by
`responses`. Failures surface as `ConnectWiseError` subclasses (see `errors`); nothing else
escapes. `Link` URLs are never requested: paging numbers are read out of them.
"""

from __future__ import annotations

import asyncio
import random
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from services.poller.connectwise import conditions as cond
from services.poller.connectwise.config import ConnectWiseConnection
from services.poller.connectwise.errors import ConnectWiseProtocolError
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
from services.poller.connectwise.responses import json_list, json_object, parse_json
from services.poller.connectwise.retry import RetryPolicy
from services.poller.connectwise.session import ConnectWiseSession, Sleep
from services.poller.connectwise.stats import ClientStats

_ORDER_BY_PATTERN = re.compile(r"^\s*(?P<field>[A-Za-z_][A-Za-z0-9_/]*)(?:\s+(?P<dir>asc|desc))?\s*$", re.I)

M = TypeVar("M", bound=CwModel)


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
        self._session = ConnectWiseSession(
            connection,
            transport=transport,
            rate_limiter=rate_limiter,
            retry_policy=retry_policy,
            sleep=sleep,
            rng=rng,
            clock=clock,
            tenant_id=tenant_id,
            ssl_context=ssl_context,
        )

    # -- lifecycle and state -----------------------------------------------------------------------

    async def __aenter__(self) -> ConnectWiseClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (idempotent)."""
        await self._session.aclose()

    def __repr__(self) -> str:
        connection = self._session.connection
        return (
            f"ConnectWiseClient(site={connection.site!r}, company_id={connection.company_id!r}, "
            f"codebase={self.codebase!r}, tenant_id={self.tenant_id!r})"
        )

    __str__ = __repr__

    @property
    def connection(self) -> ConnectWiseConnection:
        return self._session.connection

    @property
    def codebase(self) -> str | None:
        """The codebase in use (`v2025_1/`), None until discovered."""
        return self._session.codebase

    @property
    def tenant_id(self) -> str | None:
        return self._session.tenant_id

    @property
    def stats(self) -> ClientStats:
        """Counters of every request sent, 429 received and retry made by this client."""
        return self._session.stats

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._session.retry_policy

    @property
    def rate_limiter(self) -> TokenBucket:
        return self._session.rate_limiter

    def scrub(self, text: str) -> str:
        """`text` with every credential of this connection replaced by `[redacted]`."""
        return self._session.scrub(text)

    async def company_info(self) -> CompanyInfo:
        """`GET /login/companyinfo/{company}` (sent without Basic auth, as ConnectWise's clients do)."""
        return await self._session.company_info()

    # -- generic reads ---------------------------------------------------------------------------

    async def get_json(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        """GET `path` (below `/apis/3.0`) and return its JSON (for endpoints without a helper)."""
        response = await self._session.send("GET", path, params=params)
        return parse_json(response, "GET", path)

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
            response = await self._session.send("GET", path, params={**base, "page": page})
            rows = json_list(response, path)
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
            response = await self._session.send("GET", path, params=params, headers=headers)
            rows = json_list(response, path)
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
        response = await self._session.send("GET", path, params=params)
        return model.from_json(json_object(response, "GET", path))

    async def _count(self, path: str, conditions: cond.Condition | None) -> int:
        rendered = cond.render(conditions)
        response = await self._session.send(
            "GET", path, params={"conditions": rendered} if rendered else None
        )
        data = json_object(response, "GET", path)
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
        response = await self._session.send("GET", "/system/info")
        return SystemInfo.from_json(json_object(response, "GET", "/system/info"))

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
        response = await self._session.send("POST", "/system/callbacks", json_body=body, idempotent=False)
        return CallbackEntry.from_json(json_object(response, "POST", "/system/callbacks"))

    async def delete_callback(self, callback_id: int) -> None:
        """Delete a callback; `ConnectWiseNotFoundError` if it does not exist."""
        await self._session.send("DELETE", f"/system/callbacks/{_positive_id(callback_id, 'callback_id')}")
