"""The HTTP transport under the ConnectWise client: httpx's API on aiohttp's HTTP/1.1 implementation.

Contract:
* `new_transport` returns an `httpx` transport (`httpx-aiohttp`) that keeps up to `max_connections`
  connections open and reuses them (HTTP keep-alive, `keepalive_expiry` seconds idle), verifies TLS
  as `verify` says, never follows redirects (httpx does not ask it to) and never decompresses
  behind httpx's back. It costs about half the CPU per request of httpx's default (httpcore) stack
  (docs/poller.md, "ConnectWise client CPU").
* `request_not_sent(error)` is True only when the request certainly did not reach the server (no
  connection could be made, or no pooled connection became free): the only transport failures after
  which a non-idempotent request may be sent again. The aiohttp transport reports most connection
  failures as `httpx.ConnectTimeout`, also when the server dropped an established connection after
  the request was written, so the aiohttp cause decides.
* `loads` parses a response body once, with orjson (ValueError on anything that is not JSON).
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

_NOT_SENT_CAUSES = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


def new_transport(
    *, verify: ssl.SSLContext | bool, max_connections: int, keepalive_expiry: float = 30.0
) -> httpx.AsyncBaseTransport:
    """A pooled keep-alive transport for one ConnectWise client (close it with the client)."""
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=keepalive_expiry,
    )
    return AiohttpTransport(verify=verify, limits=limits)


def request_not_sent(error: httpx.HTTPError) -> bool:
    """True when `error` proves the request never reached the server."""
    if isinstance(error, httpx.ConnectError | httpx.PoolTimeout):
        return True
    if isinstance(error, httpx.ConnectTimeout):
        cause = error.__cause__
        return not isinstance(cause, aiohttp.ClientError) or isinstance(cause, _NOT_SENT_CAUSES)
    return False


def loads(body: bytes) -> Any:
    """The JSON value of `body` (orjson); `ValueError` if it is not JSON."""
    return orjson.loads(body)
