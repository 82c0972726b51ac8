"""Initial schema: contracts (with the PSA-owned guard trigger), catalog, sync settings,
processed events, poller cursors and snapshots.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

_NOW = sa.text("now()")
_TZ = sa.DateTime(timezone=True)

# The PSA-owned columns (schemas.ownership.PSA_OWNED_COLUMNS at the time of this revision; a test
# checks the trigger still guards exactly that list).
_GUARDED = ("status", "billing_amount", "billing_currency", "billing_cycle")

_GUARD_FUNCTION = """
CREATE FUNCTION contracts_guard_psa_owned() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('contract_sync.sync_path', true), '') = 'on' THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'contract % is PSA-synced and is never deleted', OLD.contract_key
            USING ERRCODE = 'CS403',
                  HINT = 'a removal in the PSA retires the contract (removed_in_psa_at)';
    END IF;
    RAISE EXCEPTION 'PSA-owned fields of PSA-synced contract % are read-only (status, billing_amount, '
                    'billing_currency, billing_cycle, psa_synced)', OLD.contract_key
        USING ERRCODE = 'CS403',
              HINT = 'the PSA sync owns these fields; change them in ConnectWise';
END
$$;
"""

_GUARD_TRIGGER = f"""
CREATE TRIGGER contracts_psa_owned_guard
BEFORE UPDATE ON contracts
FOR EACH ROW
WHEN (OLD.psa_synced AND ({" OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in (*_GUARDED, "psa_synced"))}))
EXECUTE FUNCTION contracts_guard_psa_owned();
"""

_DELETE_TRIGGER = """
CREATE TRIGGER contracts_never_deleted
BEFORE DELETE ON contracts
FOR EACH ROW
WHEN (OLD.psa_synced)
EXECUTE FUNCTION contracts_guard_psa_owned();
"""

_CATALOG_VIEW = """
CREATE VIEW catalog_item_states AS
SELECT ci.contract_key,
       ci.tenant_id,
       ci.client_id,
       ci.kind,
       ci.agreement_id,
       ci.addition_id,
       ci.name,
       ci.summary,
       ci.psa_last_updated,
       ci.observed_at,
       ci.removed_at,
       c.psa_last_updated AS contract_psa_last_updated,
       CASE
           WHEN ci.removed_at IS NOT NULL THEN 'removed'
           WHEN c.contract_key IS NULL THEN 'new'
           WHEN c.psa_last_updated IS NULL OR ci.psa_last_updated > c.psa_last_updated THEN 'updated'
           ELSE 'synced'
       END AS state
FROM catalog_items ci
LEFT JOIN contracts c ON c.contract_key = ci.contract_key;
"""


def upgrade() -> None:
    op.create_table(
        "contracts",
        sa.Column("contract_key", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("client_id", sa.Text, nullable=False),
        sa.Column("psa", sa.Text),
        sa.Column("kind", sa.Text),
        sa.Column("agreement_id", sa.BigInteger),
        sa.Column("addition_id", sa.BigInteger),
        sa.Column("psa_last_updated", _TZ),
        sa.Column("parent_contract_key", sa.Text),
        sa.Column("status", sa.Text),
        sa.Column("billing_amount", sa.Numeric(21, 6)),
        sa.Column("billing_currency", pg.CHAR(3)),
        sa.Column("billing_cycle", sa.Text),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("contract_type", sa.Text),
        sa.Column("start_date", sa.Date),
        sa.Column("end_date", sa.Date),
        sa.Column("description", sa.Text),
        sa.Column("psa_name", sa.Text),
        sa.Column("psa_contract_type", sa.Text),
        sa.Column("psa_start_date", sa.Date),
        sa.Column("psa_end_date", sa.Date),
        sa.Column("psa_description", sa.Text),
        sa.Column("local_overrides", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("notes", sa.Text),
        sa.Column("owner", sa.Text),
        sa.Column("impact", sa.Text),
        sa.Column("tags", pg.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'::text[]")),
        sa.Column("reminders", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("category", sa.Text),
        sa.Column("explanation", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("psa_synced", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("removed_in_psa_at", _TZ),
        sa.Column("created_at", _TZ, nullable=False, server_default=_NOW),
        sa.Column("updated_at", _TZ, nullable=False, server_default=_NOW),
        sa.Column("last_event_id", pg.UUID(as_uuid=True)),
        sa.CheckConstraint(
            "jsonb_typeof(local_overrides) = 'object'", name="ck_contracts_local_overrides_object"
        ),
        sa.CheckConstraint("jsonb_typeof(reminders) = 'array'", name="ck_contracts_reminders_array"),
        sa.CheckConstraint("kind IS NULL OR kind IN ('agreement', 'addition')", name="ck_contracts_kind"),
    )
    op.create_index("ix_contracts_tenant_client", "contracts", ["tenant_id", "client_id"])

    op.create_table(
        "catalog_items",
        sa.Column("contract_key", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("client_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("agreement_id", sa.BigInteger, nullable=False),
        sa.Column("addition_id", sa.BigInteger),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("summary", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("psa_last_updated", _TZ, nullable=False),
        sa.Column("observed_at", _TZ, nullable=False),
        sa.Column("removed_at", _TZ),
        sa.Column("last_event_id", pg.UUID(as_uuid=True)),
        sa.Column("updated_at", _TZ, nullable=False, server_default=_NOW),
        sa.CheckConstraint("kind IN ('agreement', 'addition')", name="ck_catalog_items_kind"),
    )
    op.create_index("ix_catalog_items_tenant_client", "catalog_items", ["tenant_id", "client_id"])
    op.create_index("ix_catalog_items_tenant_agreement", "catalog_items", ["tenant_id", "agreement_id"])

    op.create_table(
        "client_sync_settings",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("client_id", sa.Text, nullable=False),
        sa.Column("auto_sync", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("auto_sync_changed_at", _TZ),
        sa.Column("auto_sync_requested_by", sa.Text),
        sa.Column("last_synced_at", _TZ),
        sa.Column("last_status", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("catalog_counts", pg.JSONB),
        sa.Column("updated_at", _TZ, nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("tenant_id", "client_id", name="pk_client_sync_settings"),
    )

    op.create_table(
        "processed_events",
        sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("event_type", sa.Text),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("processed_at", _TZ, nullable=False, server_default=_NOW),
    )

    op.create_table(
        "poller_cursors",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("watermark", _TZ),
        sa.Column("last_run", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("updated_at", _TZ, nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("tenant_id", "scope", name="pk_poller_cursors"),
    )

    op.create_table(
        "poller_snapshots",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("agreement_id", sa.BigInteger, nullable=False),
        sa.Column("client_id", sa.Text),
        sa.Column("snapshot_hash", sa.String(128), nullable=False),
        sa.Column("psa_last_updated", _TZ),
        sa.Column("emitted_at", _TZ, nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("tenant_id", "agreement_id", name="pk_poller_snapshots"),
    )

    op.execute(_GUARD_FUNCTION)
    op.execute(_GUARD_TRIGGER)
    op.execute(_DELETE_TRIGGER)
    op.execute(_CATALOG_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS catalog_item_states")
    for table in (
        "poller_snapshots",
        "poller_cursors",
        "processed_events",
        "client_sync_settings",
        "catalog_items",
        "contracts",
    ):
        op.drop_table(table)
    op.execute("DROP FUNCTION IF EXISTS contracts_guard_psa_owned()")
