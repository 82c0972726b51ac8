"""Connection settings shared by every service, read from the environment (pydantic-settings).

Secrets are `SecretStr`: they never appear in reprs, logs or events. Building a settings object
also registers its secrets (the SASL password, the database password of `DATABASE_URL` or
`PGPASSWORD`) for log redaction (`services.common.logging.register_secret`), as the tenants file
does with the ConnectWise keys: a secret that slips into a log line is printed as `***`.
A SASL protocol without a mechanism, user name or password is refused (no silent default).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import ssl
from collections.abc import Iterable
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from services.common.logging import register_secret

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class KafkaSettings(BaseSettings):
    """Where Kafka is and how to authenticate (env prefix `KAFKA_`)."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = Field(
        default="127.0.0.1:19092", description="Comma-separated host:port list of the Kafka brokers"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Kafka security protocol"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism; required when security_protocol is SASL_* (no default)"
    )
    sasl_username: str | None = Field(default=None, description="SASL user name")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password (secret)")
    ssl_cafile: str | None = Field(default=None, description="CA bundle to verify the brokers' certificates")
    client_id: str = Field(default="contract-sync", description="Kafka client.id prefix")
    topic_replication_factor: int = Field(
        default=1,
        ge=1,
        description="Replication factor of every topic the services create, the mapper's changelog included (production: 3)",
    )
    topic_min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        description="min.insync.replicas of every topic (production: 2); unset = the broker's default",
    )

    def topic_config(self, config: dict[str, str]) -> dict[str, str]:
        """A topic's registry config plus the settings' `min.insync.replicas` (pure)."""
        extra = (
            {}
            if self.topic_min_insync_replicas is None
            else {"min.insync.replicas": str(self.topic_min_insync_replicas)}
        )
        return {**config, **extra}

    @model_validator(mode="after")
    def _sasl_is_complete(self) -> KafkaSettings:
        """SASL needs an explicit mechanism, a user and a password; registers the password for redaction."""
        if self.sasl_password is not None:
            register_secret(self.sasl_password.get_secret_value())
        if self.security_protocol.startswith("SASL"):
            missing = [
                name
                for name, value in (
                    ("KAFKA_SASL_MECHANISM", self.sasl_mechanism),
                    ("KAFKA_SASL_USERNAME", self.sasl_username),
                    ("KAFKA_SASL_PASSWORD", self.sasl_password),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs {', '.join(missing)}"
                )
        return self

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka producers, consumers and admin clients."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_context"] = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.security_protocol.startswith("SASL"):
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return kwargs

    @property
    def faust_broker(self) -> str:
        return ";".join(f"kafka://{server.strip()}" for server in self.bootstrap_servers.split(","))


class DatabaseSettings(BaseSettings):
    """Where PostgreSQL is (env `DATABASE_URL`); use `sslmode` in the URL for TLS."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: SecretStr = Field(
        default=SecretStr("postgresql+psycopg://postgres@127.0.0.1:15432/contract_sync"),
        description="SQLAlchemy URL of the contract store (postgresql+psycopg://user:pass@host:port/db?sslmode=...)",
    )

    @model_validator(mode="after")
    def _register_password(self) -> DatabaseSettings:
        """The password of the URL and libpq's `PGPASSWORD` never reach a log line."""
        register_secret(os.environ.get("PGPASSWORD"))
        with contextlib.suppress(ArgumentError):  # not a URL: the connection attempt reports it
            register_secret(make_url(self.url).password)
        return self

    @property
    def url(self) -> str:
        return self.database_url.get_secret_value()


class ObservabilitySettings(BaseSettings):
    """Logging and the health/metrics endpoint."""

    model_config = SettingsConfigDict(extra="ignore")

    log_level: str = Field(default="INFO", description="Log level: DEBUG, INFO, WARNING, ERROR")
    log_format: Literal["json", "console"] = Field(
        default="json", description="json (one object per line) or console"
    )
    health_host: str = Field(
        default="0.0.0.0", description="Interface of the /healthz /readyz /metrics server"
    )
    health_port: int = Field(default=0, ge=0, le=65535, description="Port of the health server; 0 = off")


def settings_from_args(
    settings_class: type[SettingsT], args: argparse.Namespace, fields: Iterable[str], **values: Any
) -> SettingsT:
    """`settings_class` read from the environment as usual, with each command-line flag of `fields`
    (the argparse destination named like the settings field) overriding it when given, i.e. not
    None; `values` override both. A value that does not validate raises pydantic's ValidationError."""
    given = {name: getattr(args, name) for name in fields if getattr(args, name, None) is not None}
    return settings_class(**{**given, **values})
