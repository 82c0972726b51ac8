"""The PSA-owned guard trusts a role, not a setting: a PSA-owned column of a synced contract changes
only while `current_user` is `contract_sync_sync_path` (which only the writer may assume); DELETE of
a synced contract and TRUNCATE of `contracts` are refused for every role but the table's owner.

Revision ID: 0006_guard_by_role
Revises: 0005_gateway_commands
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0006_guard_by_role"
down_revision = "0005_gateway_commands"
branch_labels = None
depends_on = None

# 'contract_sync_sync_path' is services.common.db.roles.SYNC_PATH at the time of this revision
_GUARD_FUNCTION = """
CREATE OR REPLACE FUNCTION contracts_guard_psa_owned() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    table_owner name := (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = TG_RELID);
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF current_user = table_owner THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'contracts are never truncated (only the owner role % may)', table_owner
            USING ERRCODE = 'CS403',
                  HINT = 'a removal in the PSA retires a contract (removed_in_psa_at)';
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF current_user = table_owner THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'contract % is PSA-synced and is never deleted', OLD.contract_key
            USING ERRCODE = 'CS403',
                  HINT = 'a removal in the PSA retires the contract (removed_in_psa_at)';
    END IF;
    IF current_user = 'contract_sync_sync_path' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'PSA-owned fields of PSA-synced contract % are read-only (status, billing_amount, '
                    'billing_currency, billing_cycle, psa_synced)', OLD.contract_key
        USING ERRCODE = 'CS403',
              HINT = 'the PSA sync owns these fields; change them in ConnectWise';
END
$$;
"""

_TRUNCATE_TRIGGER = """
CREATE TRIGGER contracts_never_truncated
BEFORE TRUNCATE ON contracts
FOR EACH STATEMENT
EXECUTE FUNCTION contracts_guard_psa_owned();
"""

_OLD_GUARD_FUNCTION = """
CREATE OR REPLACE FUNCTION contracts_guard_psa_owned() RETURNS trigger LANGUAGE plpgsql AS $$
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


def upgrade() -> None:
    op.execute(_GUARD_FUNCTION)
    op.execute(_TRUNCATE_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS contracts_never_truncated ON contracts")
    op.execute(_OLD_GUARD_FUNCTION)
