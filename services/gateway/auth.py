"""Bearer-token verification: JWS signed with RS256, ES256 or EdDSA, checked against a JWKS.

Guarantees:
- Only asymmetric algorithms are accepted (`ALLOWED_ALGORITHMS`): a token with `alg: none` or any
  HMAC algorithm (e.g. HS256 "signed" with the public key) is refused before any key is used.
- `exp`, `iat`, `iss`, `aud` and `sub` are required; `exp`/`nbf`/`iat` are checked with the configured
  leeway; issuer and audience must equal the configured ones.
- The tenant comes only from the configured claim of a verified token and must be a valid tenant id.
- Every refusal raises `Unauthorized` with a short reason for the problem document; the token
  itself is never logged nor echoed.
- With `cache_seconds` > 0 a verified token's principal is reused for that long, never past the
  token's `exp` (refusals are never cached); so a signing key taken out of the JWKS stops being
  accepted within `cache_seconds` (JWKS URLs are cached longer already).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient

from schemas.envelope import TENANT_ID_PATTERN

ALLOWED_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
_REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub")

_TENANT_RE = re.compile(TENANT_ID_PATTERN)


class Unauthorized(Exception):
    """The request carries no valid bearer token (HTTP 401); `str()` is a safe reason."""


@dataclass(frozen=True)
class Principal:
    """Who called: the token's tenant, subject and granted scopes."""

    tenant_id: str
    subject: str
    scopes: frozenset[str]
    clients: frozenset[str] | None = None
    """The clients the token is limited to (claim `client_scope`), None = every client of the tenant."""


class KeySource:
    """Where verification keys come from; `key_for(kid)` returns the public key or raises `Unauthorized`."""

    def key_for(self, kid: str | None, alg: str) -> PyJWK:
        raise NotImplementedError


def _pick(keys: list[PyJWK], kid: str | None, alg: str) -> PyJWK:
    candidates = [k for k in keys if kid is None or k.key_id == kid]
    if kid is None and len(candidates) > 1:
        candidates = [k for k in candidates if k.algorithm_name == alg] or candidates
    if not candidates:
        raise Unauthorized("no key with the token's key id")
    return candidates[0]


def _usable(jwks: dict[str, Any]) -> list[PyJWK]:
    """The signature keys of a JWKS document that use an allowed algorithm (others are skipped)."""
    keys: list[PyJWK] = []
    for entry in jwks.get("keys", []):
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
            continue
        try:
            key = PyJWK.from_dict(entry)
        except jwt.PyJWTError:
            continue
        if key.algorithm_name in ALLOWED_ALGORITHMS:
            keys.append(key)
    return keys


class FileKeySource(KeySource):
    """Keys from a JWKS file, re-read when the file changes (key rotation without a restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._keys: list[PyJWK] = []
        self._load()

    def _load(self) -> None:
        mtime = self.path.stat().st_mtime
        if mtime != self._mtime:
            self._keys = _usable(json.loads(self.path.read_text(encoding="utf-8")))
            self._mtime = mtime

    def key_for(self, kid: str | None, alg: str) -> PyJWK:
        with contextlib.suppress(OSError, ValueError):  # keep the last good keys
            self._load()
        return _pick(self._keys, kid, alg)


class UrlKeySource(KeySource):
    """Keys from a JWKS URL, cached for `cache_seconds`; an unknown `kid` triggers one refetch
    (at most every 30 s) so a rotated key is picked up. Fetches block: call from a worker thread."""

    def __init__(self, url: str, cache_seconds: int) -> None:
        self.client = PyJWKClient(url, cache_jwk_set=True, lifespan=cache_seconds, timeout=10)
        self._last_forced = 0.0

    def _keys(self, refresh: bool) -> list[PyJWK]:
        return [
            k for k in self.client.get_jwk_set(refresh=refresh).keys if k.algorithm_name in ALLOWED_ALGORITHMS
        ]

    def key_for(self, kid: str | None, alg: str) -> PyJWK:
        try:
            keys = self._keys(refresh=False)
            if kid is not None and not any(k.key_id == kid for k in keys):
                now = time.monotonic()
                if now - self._last_forced > 30:
                    self._last_forced = now
                    keys = self._keys(refresh=True)
        except jwt.PyJWKClientError as error:
            raise Unauthorized(f"the signing keys cannot be fetched: {type(error).__name__}") from None
        return _pick(keys, kid, alg)


class StaticKeySource(KeySource):
    """Keys given in memory (tests and benchmarks)."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self._keys = _usable(jwks)

    def key_for(self, kid: str | None, alg: str) -> PyJWK:
        return _pick(self._keys, kid, alg)


def parse_scopes(value: object) -> frozenset[str]:
    """Scopes from a claim: a space-separated string (RFC 8693 `scope`) or a list (`scp`)."""
    if isinstance(value, str):
        return frozenset(part for part in value.split() if part)
    if isinstance(value, list):
        return frozenset(str(part) for part in value if isinstance(part, str))
    return frozenset()


@dataclass(frozen=True)
class VerifierOptions:
    issuer: str
    audience: str
    tenant_claim: str = "tenant_id"
    scope_claim: str = "scope"
    client_scope_claim: str = "client_scope"
    leeway_seconds: int = 30


class TokenVerifier:
    """Verify a compact JWS and return its `Principal` (see the module's guarantees)."""

    def __init__(
        self,
        keys: KeySource,
        options: VerifierOptions,
        now: Callable[[], float] = time.time,
        cache_seconds: float = 0,
        cache_entries: int = 10_000,
    ) -> None:
        self.keys = keys
        self.options = options
        self.now = now
        self.cache_seconds = cache_seconds
        self.cache_entries = cache_entries
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal:
        """The token's principal; raises `Unauthorized`. Thread-safe."""
        if self.cache_seconds <= 0:
            return self._verify(token)[0]
        now = self.now()
        with self._lock:
            cached = self._cache.get(token)
        if cached is not None and now < cached[0]:
            return cached[1]
        principal, expires = self._verify(token)
        with self._lock:
            self._cache.pop(token, None)
            while len(self._cache) >= self.cache_entries:
                self._cache.pop(next(iter(self._cache)))  # the oldest entry
            self._cache[token] = (min(expires, now + self.cache_seconds), principal)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        """The principal and the token's `exp`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the bearer token is not a well-formed JWS") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise Unauthorized(
                f"token algorithm {str(alg)[:20]!r} is not accepted (RS256, ES256, EdDSA only)"
            )
        kid = header.get("kid")
        key = self.keys.key_for(kid if isinstance(kid, str) else None, alg)
        if key.algorithm_name != alg:
            raise Unauthorized("the token's algorithm does not match its key")
        o = self.options
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=o.audience,
                issuer=o.issuer,
                leeway=o.leeway_seconds,
                options={"require": list(_REQUIRED_CLAIMS), "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("the token is not valid yet") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token's issuer is not accepted") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the token's audience is not this API") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as error:
            raise Unauthorized(f"the token lacks the {error.claim!r} claim") from None
        except jwt.PyJWTError as error:
            raise Unauthorized(f"the token is invalid ({type(error).__name__})") from None
        tenant = claims.get(o.tenant_claim)
        if not isinstance(tenant, str) or not _TENANT_RE.match(tenant):
            raise Unauthorized(f"the token's {o.tenant_claim!r} claim is missing or not a tenant id")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not 0 < len(subject) <= 200:
            raise Unauthorized("the token's subject is missing or longer than 200 characters")
        clients: frozenset[str] | None = None
        if o.client_scope_claim in claims:
            clients = parse_scopes(claims[o.client_scope_claim])
        principal = Principal(
            tenant_id=tenant, subject=subject, scopes=parse_scopes(claims.get(o.scope_claim)), clients=clients
        )
        return principal, float(claims["exp"])


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; raises `Unauthorized` otherwise."""
    if not authorization:
        raise Unauthorized("no bearer token (send Authorization: Bearer <token>)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header is not a bearer token")
    return token.strip()
