"""The mapper's settings (env prefix `MAPPER_`), next to the shared Kafka/observability settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import DEFAULT_PARTITIONS
from services.common.state_dir import mapper_datadir


class MapperSettings(BaseSettings):
    """How the faust worker runs. Read inside functions, never at import."""

    model_config = SettingsConfigDict(env_prefix="MAPPER_", extra="ignore")

    app_id: str = Field(
        default="contract-sync-mapper",
        description="faust app id: the consumer group and the prefix of the state changelog topic",
    )
    topic_prefix: str = Field(
        default="", description="Prepended to every topic name (isolated test runs or environments)"
    )
    partitions: int = Field(
        default=DEFAULT_PARTITIONS,
        ge=1,
        description="Partitions of the state changelog; must equal those of the source topics",
    )
    store: str = Field(
        default="memory://",
        description=(
            "Local state store: memory:// (a dict, the whole changelog read back at every start) or "
            "rocksdb:// (RocksDB in MAPPER_DATADIR, only the changelog tail after its checkpoint read "
            "back; needs a persistent MAPPER_DATADIR) (docs/mapper.md#state-store)"
        ),
    )
    datadir: str = Field(
        default_factory=mapper_datadir,
        description=(
            "Data directory (the rocksdb:// state store, faust's worker state); created with its parents at start. "
            "Default `<state dir>/mapper`: CONTRACT_SYNC_STATE_DIR, else $XDG_STATE_HOME/contract-sync, "
            "else ~/.local/state/contract-sync"
        ),
    )
    group_instance_id: str | None = Field(
        default=None,
        description=(
            "Kafka static group membership (group.instance.id) of this worker: a worker restarted with "
            "the same id gets its partitions back at once instead of after the group's session timeout "
            "(faust's 60 s); a stopped worker's partitions wait that long before moving. Unique per "
            "running worker (the chart uses the pod name); unset = dynamic membership"
        ),
    )
    batch_max: int = Field(default=500, ge=1, le=100_000, description="Most messages handled per batch")
    batch_within_s: float = Field(
        default=0.05, gt=0, le=10, description="Longest wait for a batch to fill before handling it"
    )
    commit_interval_s: float = Field(
        default=1.0, gt=0, description="How often consumed offsets are committed"
    )
    tenants_file: Path | None = Field(
        default=None,
        description=(
            "The poller's tenants TOML file (only its tenant ids are read): commands and PSA events of "
            "any other tenant are dead-lettered (unknown_tenant) and rejected; unset = no tenant check"
        ),
    )

    @field_validator("store")
    @classmethod
    def _supported_store(cls, value: str) -> str:
        """Refuse stores the mapper cannot run on, at start-up instead of in a crash loop."""
        if value.split("://", 1)[0].lower() not in ("memory", "rocksdb"):
            raise ValueError(
                f"MAPPER_STORE={value!r} is not supported: use memory:// or rocksdb:// "
                "(docs/mapper.md#state-store)"
            )
        return value

    def topic(self, canonical: str) -> str:
        return f"{self.topic_prefix}{canonical}"

    def canonical(self, actual: str) -> str:
        return (
            actual[len(self.topic_prefix) :]
            if self.topic_prefix and actual.startswith(self.topic_prefix)
            else actual
        )
