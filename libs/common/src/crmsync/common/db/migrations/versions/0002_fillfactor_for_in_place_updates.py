"""Leave room in contacts and push_log pages so their frequent updates stay heap-only.

An update that changes no indexed column and finds room in its page writes no
index entry (a HOT update). Pushed and pulled field changes update contacts
that way, and every push log entry is updated once with the CRM's answer.
Existing pages keep their fill until they are rewritten; new pages get room.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 09:35:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("contacts", "push_log")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = 80)")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
