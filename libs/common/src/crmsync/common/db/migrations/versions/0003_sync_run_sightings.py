"""Record the contacts a full sync found unchanged in a narrow table of their own.

A full sync used to mark every unchanged contact as seen by rewriting its row
(`contacts.last_seen_run_id`): a new version of a wide row, its WAL and a dead
tuple to vacuum, for each of an account's contacts every 14 days. The sweep
for deleted records (R16) now reads these sightings beside that column.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 15:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_run_sightings",
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "contact_id", name=op.f("pk_sync_run_sightings")),
    )


def downgrade() -> None:
    # A full sync still running keeps its sightings where the older sweep looks.
    op.execute(
        "UPDATE contacts c SET last_seen_run_id = s.run_id FROM sync_run_sightings s WHERE s.contact_id = c.id"
    )
    op.drop_table("sync_run_sightings")
