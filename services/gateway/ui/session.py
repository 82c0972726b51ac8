"""The console's browser session: the signed-in token in a cookie, CSRF and origin checks.

Guarantees:
- The session is the bearer token: from the cookie set at sign-in or, behind an OIDC reverse proxy,
  from the `Authorization: Bearer` header the proxy adds. The session cookie holds the token itself (`HttpOnly`, `SameSite=Strict`, `Path=/ui`,
  `Secure` on HTTPS) and lives no longer than the token; every request verifies it again exactly as
  the API verifies a bearer token (`authenticate`), so an expired or forged cookie is no session.
- Every state-changing request (POST) must carry the session's CSRF token (`X-CSRF-Token` header,
  sent by htmx from the page, or a `csrf_token` form field) and, when the browser sends `Origin`,
  come from the console's own origin; otherwise it is refused (403) before anything is done. The
  CSRF token is an HMAC of the session token, so a page that cannot read the cookie cannot forge it.
- Tokens are never logged, rendered into pages, nor put in URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qs

import jwt
from fastapi import Request
from starlette.responses import Response

from services.gateway.auth import Principal

COOKIE = "cs_console"
COOKIE_PATH = "/ui"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
_CSRF_LABEL = b"contract-sync console csrf v1"


class NotSignedIn(Exception):
    """No valid session cookie (the page redirects to the sign-in page)."""


class Forbidden(Exception):
    """A state-changing request without a valid CSRF token or from another origin (403)."""


def session_token(request: Request) -> str:
    """The session cookie's token, else the bearer token a reverse proxy put in `Authorization` (an
    OIDC proxy in front of the console, docs/console.md); raises `NotSignedIn` without either."""
    token = request.cookies.get(COOKIE, "").strip()
    if not token:
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        token = bearer.strip() if scheme.lower() == "bearer" else ""
    if not token:
        raise NotSignedIn("no session")
    return token


def csrf_token(session: str) -> str:
    """The CSRF token of a session (pure, deterministic per session token)."""
    return hmac.new(session.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def same_origin(request: Request) -> bool:
    """True unless the browser says the request comes from another origin (`Origin`, `Sec-Fetch-Site`)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin == f"{request.url.scheme}://{request.url.netloc}"


class TooLarge(Exception):
    """A request body above the gateway's `max_body_bytes` (413)."""


async def form_fields(request: Request, limit: int) -> dict[str, list[str]]:
    """The urlencoded body of a form POST (htmx and plain forms send this encoding); raises
    `TooLarge` for a body above `limit` bytes, without reading more than that."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise TooLarge(f"request bodies are limited to {limit} bytes")
    chunks: list[bytes] = []
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise TooLarge(f"request bodies are limited to {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks).decode("utf-8", errors="replace")
    try:
        return parse_qs(body, keep_blank_values=True, max_num_fields=2000)
    except ValueError:
        raise TooLarge("too many form fields") from None


def check_csrf(request: Request, session: str, fields: dict[str, list[str]]) -> None:
    """Raise `Forbidden` unless the request is same-origin and carries the session's CSRF token."""
    if not same_origin(request):
        raise Forbidden("cross-origin request")
    sent = request.headers.get(CSRF_HEADER) or (fields.get(CSRF_FIELD) or [""])[0]
    if not sent or not hmac.compare_digest(sent, csrf_token(session)):
        raise Forbidden("missing or wrong CSRF token")


def token_lifetime(token: str) -> int:
    """Seconds until the (already verified) token expires, at least 0."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return max(0, int(claims.get("exp", 0)) - int(time.time()))


def set_session(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=token_lifetime(token),
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def has_scope(principal: Principal, scope: str) -> bool:
    return scope in principal.scopes
