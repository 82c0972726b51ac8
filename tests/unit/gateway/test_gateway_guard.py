"""The gateway's guard (token, body size, per-tenant rate) in front of every `/v1/` route, in process.

Only the guard is exercised here: a request it refuses never reaches the read model or Kafka, which
the fakes below would report (they raise when used). Every route behind it is tested on the real
stack in tests/integration/gateway/.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt

from services.gateway.app import Gateway, build_app
from services.gateway.auth import FileKeySource, TokenVerifier, VerifierOptions
from services.gateway.local_issuer import ensure_keys, mint_token
from services.gateway.ratelimit import TenantRateLimiter
from services.gateway.settings import GatewaySettings


class Untouchable:
    """A read model / command store that must not be reached."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the guard let a refused request through to {name}")


def _app(tmp_path: Path, *, rate: float = 1000, burst: int = 1000) -> tuple[Any, Any]:
    keys = ensure_keys(tmp_path)
    settings = GatewaySettings(jwks_file=keys.jwks_path, max_body_bytes=1024)
    gateway = Gateway(
        settings=settings,
        verifier=TokenVerifier(
            FileKeySource(keys.jwks_path), VerifierOptions(settings.issuer, settings.audience)
        ),
        read_model=Untouchable(),  # type: ignore[arg-type]
        commands=Untouchable(),  # type: ignore[arg-type]
        limiter=TenantRateLimiter(rate, burst),
        new_event_consumer=Untouchable(),  # type: ignore[arg-type]
        ready_checks={},
    )
    return build_app(gateway), keys


def _token(keys: Any, tenant: str = "acme", scopes: list[str] | None = None) -> str:
    return mint_token(keys, tenant_id=tenant, subject="u", scopes=scopes or ["sync:write"],
                      issuer="contract-sync-local", audience="contract-sync-gateway", ttl_seconds=60)  # fmt: skip


async def test_a_tenant_over_its_rate_gets_429_with_retry_after_and_other_tenants_do_not(
    tmp_path: Path,
) -> None:
    app, keys = _app(tmp_path, rate=0.5, burst=2)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        acme = {"Authorization": f"Bearer {_token(keys, scopes=['events:read'])}"}
        # missing scope (403) still counts against the tenant's rate: the guard runs first
        statuses = [(await client.get("/v1/clients", headers=acme)).status_code for _ in range(3)]
        assert statuses == [403, 403, 429]
        limited = await client.get("/v1/clients", headers=acme)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.headers["content-type"].startswith("application/problem+json")
        assert limited.json()["type"].endswith("/rate-limited")
        other = {"Authorization": f"Bearer {_token(keys, tenant='globex', scopes=['events:read'])}"}
        assert (await client.get("/v1/clients", headers=other)).status_code == 403


async def test_bodies_over_the_limit_get_413_with_or_without_a_content_length(tmp_path: Path) -> None:
    app, keys = _app(tmp_path)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {_token(keys)}", "Content-Type": "application/json"}
    big = json.dumps({"agreement_ids": list(range(1, 2000))}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 256):
            yield big[start : start + 256]

    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        sized = await client.post("/v1/clients/1/sync", content=big, headers=headers)
        assert sized.status_code == 413 and sized.json()["type"].endswith("/body-too-large")
        chunked = await client.post("/v1/clients/1/sync", content=chunks(), headers=headers)
        assert chunked.status_code == 413


async def test_a_token_is_checked_before_anything_else(tmp_path: Path) -> None:
    app, keys = _app(tmp_path)
    transport = httpx.ASGITransport(app=app)
    now = int(time.time())
    expired = jwt.encode(
        {"iss": "contract-sync-local", "aud": "contract-sync-gateway", "sub": "u", "iat": now - 600,
         "exp": now - 300, "tenant_id": "acme", "scope": "sync:write"},
        keys.private_key, algorithm="ES256", headers={"kid": keys.kid},
    )  # fmt: skip
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.post(
            "/v1/clients/1/sync", content=b"{not json", headers={"Authorization": f"Bearer {expired}"}
        )
        assert response.status_code == 401
        assert "expired" in response.json()["detail"]
        assert (await client.get("/healthz")).status_code == 200  # outside /v1/: no token needed
