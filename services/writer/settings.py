"""The writer's settings, from the environment (prefix `WRITER_`); Kafka and PostgreSQL come from
`services.common.settings` (`KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL`)."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import CONTRACT_RECORDS, DEADLETTER, PSA_AGREEMENTS, SYNC_COMMANDS, SYNC_EVENTS


class WriterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WRITER_", extra="ignore")

    group_id: str = Field(default="contract-sync-writer", description="Kafka consumer group")
    batch_max_records: int = Field(
        default=5000, ge=1, le=100_000, description="Apply at most this many per batch"
    )
    batch_max_ms: int = Field(default=200, ge=1, le=60_000, description="...or what arrived within this time")
    records_topic: str = CONTRACT_RECORDS
    psa_topic: str = PSA_AGREEMENTS
    commands_topic: str = SYNC_COMMANDS
    events_topic: str = SYNC_EVENTS
    deadletter_topic: str = DEADLETTER
    retry_initial_s: float = Field(
        default=0.2, gt=0, description="First back-off when PostgreSQL is unavailable"
    )
    retry_max_s: float = Field(default=10.0, gt=0, description="Longest back-off between attempts")
    processed_retention_days: int = Field(
        default=14,
        ge=8,
        description="Keep applied event ids this long (above the input topics' 7-day retention)",
    )
    prune_interval_s: float = Field(default=3600.0, gt=0, description="How often old event ids are pruned")
    gc_gen0_threshold: int = Field(
        default=300_000,
        ge=0,
        description=(
            "Gen-0 threshold of Python's cyclic GC while the writer runs (0 keeps the default 700); above "
            "the objects of two batches in flight, so a batch's objects are freed before a collection scans them"
        ),
    )
    rejections_before_pause: int = Field(
        default=20,
        ge=1,
        description=(
            "After this many events in a row refused by PostgreSQL as bad data (nothing applied in between),"
            " the writer pauses and retries instead of dead-lettering more (the fault is likely not the data)"
        ),
    )
    pool_size: int = Field(default=2, ge=1, le=50)
    tenants_file: Path | None = Field(
        default=None,
        description=(
            "The poller's tenants TOML file (only its tenant ids are read): nothing is applied for any "
            "other tenant (its contract records are dead-lettered as unknown_tenant); unset = no tenant check"
        ),
    )
    instance: str = Field(default_factory=socket.gethostname, description="Instance name in logs and events")

    def topic_kinds(self) -> dict[str, str]:
        """Consumed topic name -> registry topic name (they differ only when topics are renamed)."""
        return {
            self.records_topic: CONTRACT_RECORDS,
            self.psa_topic: PSA_AGREEMENTS,
            self.commands_topic: SYNC_COMMANDS,
        }
