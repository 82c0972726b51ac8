"""gateway_commands, gateway_command_events: the Sync API's record of the commands it published
(with their Idempotency-Key) and of the sync events that report their outcome.

Revision ID: 0005_gateway_commands
Revises: 0004_writer_outbox
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0005_gateway_commands"
down_revision = "0004_writer_outbox"
branch_labels = None
depends_on = None

_NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "gateway_commands",
        sa.Column("command_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("client_id", sa.Text, nullable=False),
        sa.Column("command_type", sa.Text, nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("contract_key", sa.Text),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_gateway_commands_idempotency"),
    )
    op.create_index("ix_gateway_commands_created_at", "gateway_commands", ["created_at"])
    op.create_table(
        "gateway_command_events",
        sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("command_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", pg.JSONB, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    )
    op.create_index("ix_gateway_command_events_command", "gateway_command_events", ["command_id"])


def downgrade() -> None:
    op.drop_index("ix_gateway_command_events_command", table_name="gateway_command_events")
    op.drop_table("gateway_command_events")
    op.drop_index("ix_gateway_commands_created_at", table_name="gateway_commands")
    op.drop_table("gateway_commands")
