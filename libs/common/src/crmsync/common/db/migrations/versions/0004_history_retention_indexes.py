"""Indexes for the dispatcher's poll and for deleting expired history.

The puller's dispatcher looks for each account's oldest open sync run. The
old partial index left out runs that failed and wait for a retry, so the poll
read every run of the table; the new one holds exactly the open runs, in the
order the dispatcher takes them. The scheduler's housekeeping deletes
finished runs and emitted-job records oldest first, through the two indexes
on their time columns.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# As OPEN_SYNC_RUN in the schema at this revision.
_OPEN = (
    "kind in ('full', 'incremental') and (status in ('queued', 'running') "
    "or (status in ('paused', 'failed') and next_attempt_at is not null))"
)


def upgrade() -> None:
    op.drop_index("ix_sync_runs_unfinished", table_name="sync_runs")
    op.create_index(
        "ix_sync_runs_open",
        "sync_runs",
        ["account_id", "requested_at", "created_at"],
        postgresql_where=sa.text(_OPEN),
    )
    op.create_index(op.f("ix_sync_runs_finished_at"), "sync_runs", ["finished_at"])
    op.create_index(op.f("ix_scheduled_jobs_slot_at"), "scheduled_jobs", ["slot_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_scheduled_jobs_slot_at"), table_name="scheduled_jobs")
    op.drop_index(op.f("ix_sync_runs_finished_at"), table_name="sync_runs")
    op.drop_index("ix_sync_runs_open", table_name="sync_runs")
    op.create_index(
        "ix_sync_runs_unfinished",
        "sync_runs",
        ["status", "next_attempt_at"],
        postgresql_where=sa.text("status in ('queued', 'running', 'paused')"),
    )
