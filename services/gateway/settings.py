"""The gateway's settings, from the environment (prefix `GATEWAY_`); Kafka and PostgreSQL come from
`services.common.settings` (`KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL`)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import SYNC_COMMANDS, SYNC_EVENTS

SCOPES: tuple[str, ...] = ("catalog:read", "contracts:read", "sync:write", "contracts:write", "events:read")
"""Every scope the gateway checks (docs/gateway.md lists which endpoint needs which)."""


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    host: str = Field(default="0.0.0.0", description="Interface the HTTP server listens on")
    port: int = Field(
        default=8080, ge=1, le=65535, description="Port of the HTTP API (also /healthz /readyz /metrics)"
    )
    jwks_file: Path | None = Field(
        default=None,
        description="JWKS file with the token-signing public keys (local stack: .stack/gateway/jwks.json)",
    )
    jwks_url: str | None = Field(
        default=None, description="JWKS URL of the identity provider (fetched over HTTPS and cached)"
    )
    jwks_cache_seconds: int = Field(default=300, ge=1, description="How long fetched JWKS keys are cached")
    issuer: str = Field(default="contract-sync-local", description="Required `iss` claim of every token")
    audience: str = Field(default="contract-sync-gateway", description="Required `aud` claim of every token")
    tenant_claim: str = Field(
        default="tenant_id",
        description="Claim holding the caller's tenant id (the tenant never comes from the path, query or body)",
    )
    scope_claim: str = Field(
        default="scope", description="Claim holding the granted scopes (space-separated string or list)"
    )
    client_scope_claim: str = Field(
        default="client_scope",
        description="Optional claim limiting a token to some clients of its tenant (string or list); absent = all",
    )
    token_cache_seconds: float = Field(
        default=30,
        ge=0,
        le=300,
        description="How long a verified token's principal is reused (never past its exp; 0 = verify every "
        "request); a key removed from the JWKS stops being accepted within this time",
    )
    leeway_seconds: int = Field(default=30, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat")
    max_body_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Largest accepted request body (413 above)"
    )
    rate_limit_per_second: float = Field(
        default=50.0, gt=0, description="Sustained requests per second per tenant (429 + Retry-After above)"
    )
    rate_limit_burst: int = Field(default=100, ge=1, description="Requests a tenant may send at once")
    commands_topic: str = Field(default=SYNC_COMMANDS, description="Topic the commands are published to")
    events_topic: str = Field(default=SYNC_EVENTS, description="Topic the sync events are read from")
    outcomes_group_id: str = Field(
        default="contract-sync-gateway",
        description="Consumer group that records command outcomes from the sync events (shared by replicas)",
    )
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0, description="Interval of SSE heartbeat comments")
    idempotency_retention_hours: int = Field(
        default=24, ge=1, description="How long Idempotency-Key answers and command outcomes are kept"
    )
    pool_size: int = Field(default=8, ge=1, le=100, description="PostgreSQL connections of one instance")
    catalog_cache_entries: int = Field(
        default=64,
        ge=0,
        description="Rendered catalog documents kept per instance, reused while the client's read-model "
        "version is unchanged (0 = off)",
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if self.jwks_file is not None and self.jwks_url is not None:
            raise ValueError("set GATEWAY_JWKS_FILE or GATEWAY_JWKS_URL, not both")
        return self
