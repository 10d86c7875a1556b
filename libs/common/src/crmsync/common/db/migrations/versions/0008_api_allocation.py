"""Each account's API allocation: crmsync's part of the CRM's daily API limit.

`crm_connections.api_allocation_share` (a share of the limit, 0 < x <= 1) or
`crm_connections.api_allocation_calls` (a number of calls a day), never both;
neither: crmsync is held to no allocation of its own. `crm_api_usage`: the
calls crmsync took from the allocation per account and CRM day (UTC), taken
in leases by every process of every service alike.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("crm_connections", sa.Column("api_allocation_share", sa.Float(), nullable=True))
    op.add_column("crm_connections", sa.Column("api_allocation_calls", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_crm_connections_api_allocation_share"),
        "crm_connections",
        "api_allocation_share is null or (api_allocation_share > 0 and api_allocation_share <= 1)",
    )
    op.create_check_constraint(
        op.f("ck_crm_connections_api_allocation_calls"),
        "crm_connections",
        "api_allocation_calls is null or api_allocation_calls > 0",
    )
    op.create_check_constraint(
        op.f("ck_crm_connections_api_allocation_one"),
        "crm_connections",
        "api_allocation_share is null or api_allocation_calls is null",
    )
    op.create_table(
        "crm_api_usage",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("calls", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("calls >= 0", name=op.f("ck_crm_api_usage_calls")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_crm_api_usage_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "day", name=op.f("pk_crm_api_usage")),
    )


def downgrade() -> None:
    op.drop_table("crm_api_usage")
    op.drop_constraint(op.f("ck_crm_connections_api_allocation_one"), "crm_connections", type_="check")
    op.drop_constraint(op.f("ck_crm_connections_api_allocation_calls"), "crm_connections", type_="check")
    op.drop_constraint(op.f("ck_crm_connections_api_allocation_share"), "crm_connections", type_="check")
    op.drop_column("crm_connections", "api_allocation_calls")
    op.drop_column("crm_connections", "api_allocation_share")
