"""billing_amount as unconstrained numeric: keep the scale the PSA gave ("1500.00", not "1500.000000").

Revision ID: 0002_billing_amount_scale
Revises: 0001_initial
Create Date: 2026-11-26
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision = "0002_billing_amount_scale"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


_GUARDED = ("status", "billing_amount", "billing_currency", "billing_cycle")

# The guard trigger depends on the column, so it is dropped and re-created (same definition as 0001).
_GUARD_TRIGGER = f"""
CREATE TRIGGER contracts_psa_owned_guard
BEFORE UPDATE ON contracts
FOR EACH ROW
WHEN (OLD.psa_synced AND ({" OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in (*_GUARDED, "psa_synced"))}))
EXECUTE FUNCTION contracts_guard_psa_owned();
"""


def _retype(new: sa.Numeric[Decimal], old: sa.Numeric[Decimal]) -> None:
    op.execute("DROP TRIGGER contracts_psa_owned_guard ON contracts")
    op.alter_column("contracts", "billing_amount", type_=new, existing_type=old)
    op.execute(_GUARD_TRIGGER)


def upgrade() -> None:
    _retype(sa.Numeric(), sa.Numeric(21, 6))


def downgrade() -> None:
    _retype(sa.Numeric(21, 6), sa.Numeric())
