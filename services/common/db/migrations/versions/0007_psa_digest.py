"""psa_digest: what a contract was mapped from and what a catalog item now holds, by content.

ConnectWise's `lastUpdated` has one-second resolution, so two changes within one second share a
version. `contracts.psa_digest` is the digest of the PSA inputs the contract was mapped from (carried
by the record, `source.psa_digest`), `catalog_items.psa_digest` the same digest of the item as last
observed; `catalog_item_states` shows an item `updated` when its version is newer than its contract's
or the same with another digest. Rows written before this revision have NULL digests and keep the
version-only comparison until their next change.

Revision ID: 0007_psa_digest
Revises: 0006_guard_by_role
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_psa_digest"
down_revision = "0006_guard_by_role"
branch_labels = None
depends_on = None

_VIEW = """
CREATE OR REPLACE VIEW catalog_item_states AS
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
           WHEN ci.psa_last_updated = c.psa_last_updated
                AND ci.psa_digest IS NOT NULL AND c.psa_digest IS NOT NULL
                AND ci.psa_digest <> c.psa_digest THEN 'updated'
           ELSE 'synced'
       END AS state,
       ci.psa_digest,
       c.psa_digest AS contract_psa_digest
FROM catalog_items ci
LEFT JOIN contracts c ON c.contract_key = ci.contract_key;
"""

_OLD_VIEW = """
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
    op.add_column("contracts", sa.Column("psa_digest", sa.Text))
    op.add_column("catalog_items", sa.Column("psa_digest", sa.Text))
    op.execute(_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW catalog_item_states")
    op.execute(_OLD_VIEW)
    op.drop_column("catalog_items", "psa_digest")
    op.drop_column("contracts", "psa_digest")
