"""Suppression entries by e-mail (R23) and the drift a sync run found (R25).

`email_suppressions`: a locally opted-out contact whose CRM record was deleted
leaves its e-mail here, so a CRM record that comes back with it is opted out
at once. `sync_runs.drift_found`: how many local values the run's repair pass
found missing from the CRM and handed to the pusher (null: no pass in that run).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_suppressions",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("email_lower", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_email_suppressions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "email_lower", name=op.f("pk_email_suppressions")),
    )
    op.add_column("sync_runs", sa.Column("drift_found", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("sync_runs", "drift_found")
    op.drop_table("email_suppressions")
