"""Tenant configuration of the poller: a TOML file naming every ConnectWise site to poll.

    [defaults]                       # optional; every key of a tenant table may be set here
    poll_interval = "5m"
    auto_sync_interval = "30s"

    [[tenants]]
    id = "acme"                      # our tenant id (lower-case slug)
    site = "api-na.myconnectwise.net"
    company_id = "acme"              # the ConnectWise login company
    clients = "all"                  # or a list of ConnectWise company ids: [250, 251]
    time_zone = "America/New_York"
    default_currency = "USD"
    [tenants.credentials]            # each secret from an environment variable OR a file, never inline
    public_key = { env = "ACME_CW_PUBLIC_KEY" }
    private_key = { file = "/run/secrets/acme_cw_private_key" }
    client_id = { env = "CW_CLIENT_ID" }

Guarantees:
- A secret written inline (`public_key = "..."`) is refused at load time; secrets are read only by
  `connection_for`, returned as `SecretStr`, and registered with the log redaction filter.
- Durations accept seconds (`30`) or `30s`, `5m`, `24h`, `1d`.
- `shard_of(tenant_id, n)` is a stable hash (SHA-256), so every instance of `--shard i/n` agrees on
  which instance owns a tenant, across restarts and Python versions.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from schemas.envelope import CLIENT_ID_PATTERN, TENANT_ID_PATTERN
from services.common.logging import register_secret
from services.common.tenants import read_tenants_document
from services.poller.connectwise import ConnectWiseConnection, Paging


class TenantConfigError(ValueError):
    """The tenant configuration cannot be used (bad TOML, a missing secret, an invalid value)."""


_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> timedelta:
    """`30`, `30.5`, `"30s"`, `"5m"`, `"24h"`, `"1d"`, `"250ms"` or a timedelta -> timedelta (pure)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '24h'")
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match["n"]) * _UNIT_SECONDS[match["unit"] or "s"])
    raise ValueError(f"invalid duration {value!r}: use seconds or '30s', '5m', '24h', '1d'")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class SecretRef(BaseModel):
    """Where one secret comes from: exactly one of an environment variable or a file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_inline(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError('secrets may not be written inline: use { env = "VAR" } or { file = "/path" }')
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret needs exactly one of `env` or `file`")
        return self

    def resolve(self, environ: Mapping[str, str], base_dir: Path) -> SecretStr:
        """Read the secret; raises `TenantConfigError` naming the variable/file (never the value)."""
        if self.env is not None:
            value = environ.get(self.env)
            if not value:
                raise TenantConfigError(f"environment variable {self.env} is not set or empty")
        else:
            assert self.file is not None
            path = self.file if self.file.is_absolute() else base_dir / self.file
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise TenantConfigError(f"cannot read secret file {path}: {error.strerror}") from None
            if not value:
                raise TenantConfigError(f"secret file {path} is empty")
        register_secret(value)
        return SecretStr(value)


class Credentials(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    public_key: SecretRef
    private_key: SecretRef
    client_id: SecretRef


class TenantConfig(BaseModel):
    """One tenant (an MSP's ConnectWise site) and how to poll it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=TENANT_ID_PATTERN)
    site: str
    company_id: str = Field(min_length=1, max_length=100)
    credentials: Credentials
    codebase: str | None = None
    api_version: str | None = None
    verify_tls: bool = True
    ca_bundle: Path | None = None
    clients: Literal["all"] | list[Annotated[int, Field(ge=1, le=2_147_483_647)]] = "all"
    client_map: dict[str, str] = Field(
        default_factory=dict,
        description="ConnectWise company id -> our client id, when the tenant maps clients otherwise",
    )
    time_zone: str = "UTC"
    default_currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    requests_per_minute: float = Field(
        default=600.0, gt=0, description="The tenant's ConnectWise request budget"
    )
    rate_limit_headroom: float = Field(
        default=0.02, ge=0, lt=1, description="Fraction of the budget left unused"
    )
    rate_limit_burst: float | None = Field(default=None, gt=0, description="Requests the limiter may burst")
    concurrency: int = Field(default=8, ge=1, le=64, description="Concurrent additions reads")
    paging: Paging = Paging.FORWARD_ONLY
    poll_interval: Duration = timedelta(minutes=5)
    auto_sync_interval: Duration = timedelta(seconds=30)
    overlap: Duration = timedelta(minutes=2)
    additions_sweep_period: Duration = timedelta(hours=24)
    reconcile_interval: Duration = timedelta(hours=24)
    removal_guard_ratio: float = Field(default=0.2, gt=0, le=1)
    removal_guard_floor: int = Field(default=2, ge=0)
    removal_budget_window: Duration = Field(
        default=timedelta(hours=1),
        description="Window of the per-tenant removal budget (max(floor, ratio x known) removals per window)",
    )
    callback_key_hosts: list[str] = Field(
        default_factory=list, description="Hosts a callback's key_url may name, besides the site's host"
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("client_map")
    @classmethod
    def _valid_client_ids(cls, value: dict[str, str]) -> dict[str, str]:
        for company, client in value.items():
            if not company.isdigit() or not re.match(CLIENT_ID_PATTERN, client) or client == "*":
                raise ValueError(f"invalid client_map entry {company!r} = {client!r}")
        return value

    @field_validator("clients")
    @classmethod
    def _non_empty(cls, value: Literal["all"] | list[int]) -> Literal["all"] | list[int]:
        if isinstance(value, list) and not value:
            raise ValueError('clients is "all" or a non-empty list of ConnectWise company ids')
        return value

    @property
    def company_ids(self) -> tuple[int, ...] | None:
        """The configured company ids, or None for all companies."""
        return None if self.clients == "all" else tuple(sorted(set(self.clients)))

    @property
    def site_host(self) -> str:
        text = self.site if "://" in self.site else "https://" + self.site
        return (urlsplit(text).hostname or "").lower()

    def client_id_for(self, company_id: int) -> str:
        """Our client id of a ConnectWise company (its decimal id unless `client_map` says otherwise)."""
        return self.client_map.get(str(company_id), str(company_id))

    def company_for(self, client_id: str) -> int | None:
        """The ConnectWise company id behind one of our client ids (None if it is not a number we know)."""
        for company, client in self.client_map.items():
            if client == client_id:
                return int(company)
        return int(client_id) if client_id.isdigit() and str(int(client_id)) == client_id else None

    def includes_company(self, company_id: int) -> bool:
        ids = self.company_ids
        return ids is None or company_id in ids


class PollerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tenants: list[TenantConfig]
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _unique_ids(self) -> PollerConfig:
        seen: set[str] = set()
        for tenant in self.tenants:
            if tenant.id in seen:
                raise ValueError(f"tenant id {tenant.id!r} appears twice")
            seen.add(tenant.id)
        return self

    def tenant(self, tenant_id: str) -> TenantConfig | None:
        return next((t for t in self.tenants if t.id == tenant_id), None)


def parse_config(document: Mapping[str, Any], base_dir: Path = Path(".")) -> PollerConfig:
    """Validate a parsed TOML document (pure); `[defaults]` fills keys a tenant leaves out."""
    unknown = set(document) - {"defaults", "tenants"}
    if unknown:
        raise TenantConfigError(f"unknown top-level keys: {sorted(unknown)}")
    defaults = document.get("defaults", {})
    tenants = document.get("tenants", [])
    if not isinstance(defaults, dict) or not isinstance(tenants, list):
        raise TenantConfigError("[defaults] must be a table and [[tenants]] an array of tables")
    merged = [{**defaults, **tenant} for tenant in tenants if isinstance(tenant, dict)]
    if len(merged) != len(tenants):
        raise TenantConfigError("every [[tenants]] entry must be a table")
    try:
        return PollerConfig.model_validate({"tenants": merged, "base_dir": base_dir})
    except ValueError as error:
        raise TenantConfigError(f"invalid tenant configuration: {error}") from None


def load_config(path: Path | str) -> PollerConfig:
    """Read and validate a tenants TOML file; raises `TenantConfigError` (secrets are not read here)."""
    document = read_tenants_document(path, TenantConfigError)
    return parse_config(document, base_dir=Path(path).resolve().parent)


def connection_for(
    tenant: TenantConfig, *, environ: Mapping[str, str] | None = None, base_dir: Path = Path(".")
) -> ConnectWiseConnection:
    """The ConnectWise connection of `tenant`, with its secrets read from env/files and registered
    for log redaction. Raises `TenantConfigError` when a secret is missing."""
    env = os.environ if environ is None else environ
    creds = tenant.credentials
    options: dict[str, Any] = {
        "site": tenant.site,
        "company_id": tenant.company_id,
        "public_key": creds.public_key.resolve(env, base_dir),
        "private_key": creds.private_key.resolve(env, base_dir),
        "client_id": creds.client_id.resolve(env, base_dir),
        "codebase": tenant.codebase,
        "verify_tls": tenant.verify_tls,
        "ca_bundle": tenant.ca_bundle,
        "requests_per_minute": tenant.requests_per_minute,
        "rate_limit_headroom": tenant.rate_limit_headroom,
        "rate_limit_burst": tenant.rate_limit_burst,
    }
    if tenant.api_version:
        options["api_version"] = tenant.api_version
    try:
        return ConnectWiseConnection(**options)
    except ValueError as error:
        raise TenantConfigError(f"tenant {tenant.id}: {error}") from None


def parse_shard(text: str) -> tuple[int, int]:
    """`"i/n"` -> `(i, n)` with `0 <= i < n` (pure)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"shard must look like 'i/n' (e.g. 0/3), got {text!r}")
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard index must be in 0..n-1, got {text!r}")
    return index, count


def shard_of(tenant_id: str, count: int) -> int:
    """The shard (0..count-1) that owns `tenant_id`: a stable SHA-256 hash, the same everywhere."""
    digest = hashlib.sha256(tenant_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def tenants_for_shard(config: PollerConfig, index: int, count: int) -> list[TenantConfig]:
    return [t for t in config.tenants if shard_of(t.id, count) == index]
