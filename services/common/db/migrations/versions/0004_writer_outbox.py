"""writer_outbox: the writer's transactional outbox. The sync events and dead letters a batch causes
are written in the batch's own transaction and published from here afterwards, so a crash between
the database commit and the broker's acknowledgement loses nothing.

Revision ID: 0004_writer_outbox
Revises: 0003_poller_addition_ids
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0004_writer_outbox"
down_revision = "0003_poller_addition_ids"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "writer_outbox",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(always=False), nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.LargeBinary),
        sa.Column("value", sa.LargeBinary),
        sa.Column("header_names", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("header_values", pg.ARRAY(sa.LargeBinary), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    )
    op.create_index("ix_writer_outbox_topic_seq", "writer_outbox", ["topic", "seq"])


def downgrade() -> None:
    op.drop_index("ix_writer_outbox_topic_seq", table_name="writer_outbox")
    op.drop_table("writer_outbox")
