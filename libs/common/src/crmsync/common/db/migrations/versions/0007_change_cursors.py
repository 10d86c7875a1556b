"""Change cursors of each account's CRM objects: where the next incremental read resumes.

`sync_state.change_cursor` is the connector's opaque cursor (R15, R18). Rows that
predate it were written by the Salesforce puller, whose watermarks become the
Salesforce connector's cursor (crmsync.common.crm.salesforce._changes):
{"v": 1, "modified_since": …, "deleted_since": …}, so the next incremental goes on
from where the last one got to instead of a full sync.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ISO = """to_char({column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""

_FILL = f"""
    update sync_state s
    set change_cursor = json_build_object(
        'v', 1,
        'modified_since', {_ISO.format(column="s.watermark")},
        'deleted_since', {_ISO.format(column="coalesce(s.deleted_watermark, s.watermark)")}
    )::text
    from crm_connections c
    where c.account_id = s.account_id and c.provider = 'salesforce' and s.watermark is not null
"""


def upgrade() -> None:
    op.add_column("sync_state", sa.Column("change_cursor", sa.Text(), nullable=True))
    op.execute(_FILL)


def downgrade() -> None:
    op.drop_column("sync_state", "change_cursor")
