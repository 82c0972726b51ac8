"""Process settings of the poller, from the environment (prefix `POLLER_`) and the command line.

Kafka, PostgreSQL and observability come from the shared settings classes
(`KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL`, `LOG_LEVEL`, `HEALTH_PORT`, ...); the tenants and their
ConnectWise connections come from the TOML file named by `--config` / `POLLER_CONFIG`.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:100]


class PollerSettings(BaseSettings):
    """How this poller process runs (env prefix `POLLER_`)."""

    model_config = SettingsConfigDict(env_prefix="POLLER_", extra="ignore")

    config: Path | None = Field(default=None, description="Tenants TOML file")
    shard: str = Field(default="0/1", description="`i/n`: poll the tenants whose stable hash mod n is i")
    instance: str = Field(default_factory=_default_instance, description="Instance name in heartbeats")
    heartbeat_interval_s: float = Field(
        default=60.0, gt=0, description="Seconds between sync.heartbeat events"
    )
    shutdown_grace_s: float = Field(
        default=20.0,
        ge=0,
        description="On SIGTERM, seconds a run in progress may take to finish before it is abandoned",
    )
    commands_group: str = Field(
        default="contract-sync-poller",
        description="Consumer group prefix for sync.commands.v1 (one group per shard)",
    )
    refresh_max_age_s: float = Field(
        default=600.0,
        gt=0,
        description="Refresh commands older than this (e.g. replayed after downtime) are skipped",
    )
    callbacks_host: str = Field(
        default="0.0.0.0", description="Interface of the ConnectWise callback endpoint"
    )
    callbacks_port: int = Field(
        default=0, ge=0, le=65535, description="Port of the callback endpoint; 0 = off"
    )
    callbacks_max_concurrency: int = Field(
        default=64,
        ge=1,
        description="Connections and requests the callback endpoint serves at once (beyond: 503)",
    )
    topic_prefix: str = Field(
        default="",
        description="Prepended to the Kafka topic names it reads and writes (isolated test runs, benchmarks)",
    )

    def topic(self, canonical: str) -> str:
        """The actual name of a registry topic (`psa.agreements.v1` -> `{prefix}psa.agreements.v1`)."""
        return f"{self.topic_prefix}{canonical}"
