"""Durable re-delivery of pushes (R24): the push_deliveries table and the push log's `waiting`.

A push that failed for a transient reason waits in push_deliveries, one
waiting row per account and contact, until its next attempt; its events'
push log entries are `waiting` meanwhile.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_STATUS_BEFORE = "status in ('pending', 'succeeded', 'failed', 'skipped')"
_STATUS_AFTER = "status in ('pending', 'waiting', 'succeeded', 'failed', 'skipped')"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_push_log_status"), "push_log", type_="check")
    op.create_check_constraint(op.f("ck_push_log_status"), "push_log", _STATUS_AFTER)
    op.create_table(
        "push_deliveries",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column("operation", sa.Text(), nullable=False),
        sa.Column("crm_object", sa.Text(), nullable=False),
        sa.Column("crm_id", sa.Text(), nullable=True),
        sa.Column("email_lower", sa.Text(), nullable=True),
        sa.Column(
            "fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "event_ids", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False
        ),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error_code", sa.Text(), nullable=True),
        sa.Column("last_error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("operation in ('create', 'update')", name=op.f("ck_push_deliveries_operation")),
        sa.CheckConstraint("state in ('waiting', 'failed')", name=op.f("ck_push_deliveries_state")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_push_deliveries_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_deliveries")),
    )
    op.create_index(
        "uq_push_deliveries_waiting_contact",
        "push_deliveries",
        ["account_id", "contact_id"],
        unique=True,
        postgresql_where=sa.text("state = 'waiting'"),
    )
    op.create_index(
        "ix_push_deliveries_due",
        "push_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("state = 'waiting'"),
    )
    op.create_index(
        op.f("ix_push_deliveries_account_id_state_last_error_code"),
        "push_deliveries",
        ["account_id", "state", "last_error_code"],
    )


def downgrade() -> None:
    op.drop_table("push_deliveries")
    op.execute("update push_log set status = 'pending' where status = 'waiting'")
    op.drop_constraint(op.f("ck_push_log_status"), "push_log", type_="check")
    op.create_check_constraint(op.f("ck_push_log_status"), "push_log", _STATUS_BEFORE)
