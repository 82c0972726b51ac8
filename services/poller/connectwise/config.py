"""Connection settings of one ConnectWise tenant.

Secrets (`public_key`, `private_key`, `client_id`) are `SecretStr`: they print as `**********` in
`repr()`, `str()`, `model_dump()` and JSON, and are read only where the request headers are built.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

DEFAULT_API_VERSION = "2025.8"
_LOOPBACK_NAMES = {"localhost"}


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ConnectWiseConnection(BaseModel):
    """How to reach and authenticate to one ConnectWise Manage site.

    `site` is a host (`api-na.myconnectwise.net`) or an origin URL (`https://host[:port]`).
    Plain `http://` is accepted only for loopback hosts (the local simulator); ConnectWise itself
    requires TLS. `codebase` (e.g. `v2025_1/`) pins the path; when None it is discovered through
    `/login/companyinfo/{company_id}` and refreshed once when an API call answers 404.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str
    company_id: str = Field(min_length=1, max_length=100)
    public_key: SecretStr
    private_key: SecretStr
    client_id: SecretStr
    codebase: str | None = None
    api_version: str = Field(default=DEFAULT_API_VERSION, pattern=r"^\d{4}\.\d{1,2}$")
    verify_tls: bool = True
    ca_bundle: Path | None = None
    requests_per_minute: float = Field(default=600.0, gt=0)
    rate_limit_burst: float | None = Field(default=None, gt=0)
    rate_limit_headroom: float = Field(default=0.02, ge=0, lt=1)
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    write_timeout: float = Field(default=30.0, gt=0)
    pool_timeout: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_initial: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=30.0, ge=0)
    max_retry_after: float = Field(default=120.0, ge=0)
    max_connections: int = Field(default=32, ge=1)

    @field_validator("codebase")
    @classmethod
    def _normalise_codebase(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().strip("/")
        if not value or any(c in value for c in "?#\\ ") or ".." in value:
            raise ValueError("codebase must look like 'v2025_1' or 'v4_6_release'")
        return value + "/"

    @field_validator("company_id")
    @classmethod
    def _plain_company(cls, value: str) -> str:
        if any(c in value for c in "/?#\\ +:"):
            raise ValueError("company_id is the ConnectWise login company (e.g. 'acme')")
        return value

    @model_validator(mode="after")
    def _check_site(self) -> ConnectWiseConnection:
        scheme, host = _split_site(self.site)
        if scheme == "http" and not _is_loopback(host):
            raise ValueError("ConnectWise requires HTTPS; plain http is allowed only for loopback hosts")
        return self

    @property
    def origin(self) -> str:
        """`scheme://host[:port]` of the site."""
        scheme, host_port = _split_site(self.site, keep_port=True)
        return f"{scheme}://{host_port}"

    def __repr__(self) -> str:  # SecretStr already masks; keep the repr short and obviously safe
        return (
            f"ConnectWiseConnection(site={self.site!r}, company_id={self.company_id!r}, "
            f"codebase={self.codebase!r}, api_version={self.api_version!r}, "
            f"requests_per_minute={self.requests_per_minute!r}, verify_tls={self.verify_tls!r})"
        )

    __str__ = __repr__


def _split_site(site: str, *, keep_port: bool = False) -> tuple[str, str]:
    text = site.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"invalid ConnectWise site {site!r}")
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("site must be a host or an origin URL without path, query or user info")
    host = parts.hostname
    if keep_port:
        host = parts.netloc.lower()
    return scheme, host
