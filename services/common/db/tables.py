"""The contract store's tables as SQLAlchemy 2 Core metadata (the schema itself comes from the
alembic migrations in `migrations/`; a test checks the two agree).

Tables:
- `contracts`: one row per contract record, never deleted. PSA-owned columns
  (`schemas.ownership.PSA_OWNED_COLUMNS`) are written only by the writer's sync path (a trigger
  refuses anything else on a PSA-synced contract). PSA-seeded fields have an *effective* column
  (`name`, ...) and a `psa_<field>` column holding the PSA's latest value; `local_overrides`
  (jsonb `{field: value}`) names the seeded fields edited locally, which later syncs keep.
- `catalog_items`: every agreement and addition observed per client (the import dialog's list).
- `client_sync_settings`: per client the auto-sync flag, "last synced" and last status.
- `processed_events`: ids of applied events (exactly-once effects).
- `writer_outbox`: messages (sync events, dead letters) a committed batch still owes Kafka; written in
  the batch's transaction, deleted once the broker acknowledged them (`seq` = publication order).
- `poller_cursors`, `poller_snapshots`: the poller's watermarks and last emitted snapshots.
- `gateway_commands`, `gateway_command_events`: the commands the Sync API published (with their
  Idempotency-Key) and the sync events that carry their outcome (by `correlationid`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, CHAR, JSONB, UUID

metadata = MetaData()

_NOW = text("now()")

contracts = Table(
    "contracts",
    metadata,
    Column("contract_key", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    # source of a PSA-synced contract
    Column("psa", Text),
    Column("kind", Text),
    Column("agreement_id", BigInteger),
    Column("addition_id", BigInteger),
    Column("psa_last_updated", DateTime(timezone=True)),
    Column("parent_contract_key", Text),
    Column("psa_digest", Text),  # digest of the PSA inputs mapped (schemas.psa_digest); NULL before 0007
    # PSA-owned (schemas.ownership.PSA_OWNED_COLUMNS)
    Column("status", Text),
    Column("billing_amount", Numeric),  # unconstrained: keeps the scale the PSA gave ("1500.00")
    Column("billing_currency", CHAR(3)),
    Column("billing_cycle", Text),
    # PSA-seeded: effective value (PSA value unless overridden locally) ...
    Column("name", Text, nullable=False),
    Column("contract_type", Text),
    Column("start_date", Date),
    Column("end_date", Date),
    Column("description", Text),
    # ... and the PSA's latest value
    Column("psa_name", Text),
    Column("psa_contract_type", Text),
    Column("psa_start_date", Date),
    Column("psa_end_date", Date),
    Column("psa_description", Text),
    Column("local_overrides", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # local fields: never written by a sync
    Column("notes", Text),
    Column("owner", Text),
    Column("impact", Text),
    Column("tags", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    Column("reminders", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    # mapping outputs
    Column("category", Text),
    Column("explanation", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("psa_synced", Boolean, nullable=False, server_default=text("false")),
    Column("removed_in_psa_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Column("last_event_id", UUID(as_uuid=True)),
    CheckConstraint("jsonb_typeof(local_overrides) = 'object'", name="ck_contracts_local_overrides_object"),
    CheckConstraint("jsonb_typeof(reminders) = 'array'", name="ck_contracts_reminders_array"),
    CheckConstraint("kind IS NULL OR kind IN ('agreement', 'addition')", name="ck_contracts_kind"),
    Index("ix_contracts_tenant_client", "tenant_id", "client_id"),
)

catalog_items = Table(
    "catalog_items",
    metadata,
    Column("contract_key", Text, primary_key=True),  # the key the item's contract has (or will have)
    Column("tenant_id", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("agreement_id", BigInteger, nullable=False),
    Column("addition_id", BigInteger),
    Column("name", Text, nullable=False),
    Column("summary", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("psa_last_updated", DateTime(timezone=True), nullable=False),
    Column("observed_at", DateTime(timezone=True), nullable=False),
    Column("removed_at", DateTime(timezone=True)),
    Column("last_event_id", UUID(as_uuid=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Column("psa_digest", Text),  # digest of the item's mapped inputs (schemas.psa_digest)
    CheckConstraint("kind IN ('agreement', 'addition')", name="ck_catalog_items_kind"),
    Index("ix_catalog_items_tenant_client", "tenant_id", "client_id"),
    Index("ix_catalog_items_tenant_agreement", "tenant_id", "agreement_id"),
)

client_sync_settings = Table(
    "client_sync_settings",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("auto_sync", Boolean, nullable=False, server_default=text("false")),
    Column("auto_sync_changed_at", DateTime(timezone=True)),
    Column("auto_sync_requested_by", Text),
    Column("last_synced_at", DateTime(timezone=True)),
    Column("last_status", Text),
    Column("last_error", Text),
    Column("catalog_counts", JSONB),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    PrimaryKeyConstraint("tenant_id", "client_id", name="pk_client_sync_settings"),
)

processed_events = Table(
    "processed_events",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("event_type", Text),
    Column("topic", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
)

writer_outbox = Table(
    "writer_outbox",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("seq", BigInteger, Identity(always=False), nullable=False),  # publication order
    Column("topic", Text, nullable=False),
    Column("key", LargeBinary),
    Column("value", LargeBinary),
    Column("header_names", ARRAY(Text), nullable=False),
    Column("header_values", ARRAY(LargeBinary), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Index("ix_writer_outbox_topic_seq", "topic", "seq"),
)

poller_cursors = Table(
    "poller_cursors",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("watermark", DateTime(timezone=True)),
    Column("last_run", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    PrimaryKeyConstraint("tenant_id", "scope", name="pk_poller_cursors"),
)

poller_snapshots = Table(
    "poller_snapshots",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("agreement_id", BigInteger, nullable=False),
    Column("client_id", Text),
    Column("snapshot_hash", String(128), nullable=False),
    Column("psa_last_updated", DateTime(timezone=True)),
    Column("addition_ids", ARRAY(BigInteger)),  # additions of the last emitted snapshot
    Column("emitted_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    PrimaryKeyConstraint("tenant_id", "agreement_id", name="pk_poller_snapshots"),
)

gateway_commands = Table(
    "gateway_commands",
    metadata,
    Column("command_id", UUID(as_uuid=True), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("command_type", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("idempotency_key", Text),
    Column("request_hash", Text, nullable=False),
    Column("contract_key", Text),
    Column("published_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    UniqueConstraint("tenant_id", "idempotency_key", name="uq_gateway_commands_idempotency"),
    Index("ix_gateway_commands_created_at", "created_at"),
)

gateway_command_events = Table(
    "gateway_command_events",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("command_id", UUID(as_uuid=True), nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("data", JSONB, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Index("ix_gateway_command_events_command", "command_id"),
)

CATALOG_STATES = ("new", "updated", "synced", "removed")
