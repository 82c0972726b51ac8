"""poller_snapshots.addition_ids: the ids of the additions in the last emitted snapshot, so the
poller can notice a removed addition (and confirm it with a direct GET).

Revision ID: 0003_poller_addition_ids
Revises: 0002_billing_amount_scale
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0003_poller_addition_ids"
down_revision = "0002_billing_amount_scale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("poller_snapshots", sa.Column("addition_ids", pg.ARRAY(sa.BigInteger)))


def downgrade() -> None:
    op.drop_column("poller_snapshots", "addition_ids")
