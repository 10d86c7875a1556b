"""When each account's schedule is next due: the scheduler reads only the accounts due.

`schedule_due` holds, per connected account, the moment the scheduler must look
at it again: its schedule's next tick, set by the scheduler when it has emitted
the tick's jobs. Whatever else decides the account's jobs moves it to
'-infinity' (due at once, whatever the scheduler's clock) and bumps its
`generation`, through triggers, so that the services that write those rows need
not know of it: a new connection, a change of its API limit or allocation, a
saved, changed or deleted schedule (a field added to the mapping sets its
full_sync_requested_at), and a deleted record of an emitted job (the record is
what keeps a job from being emitted twice). The scheduler writes a next tick
only over the generation it read, so a change made while it was deciding is
never overwritten.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_DUE_NOW = """
    insert into schedule_due (account_id)
    select c.account_id from crm_connections c where c.account_id = {account}
    on conflict (account_id) do update
        set next_due_at = '-infinity', generation = schedule_due.generation + 1
"""

_FUNCTIONS = {
    "schedule_due_of_connection": f"""
        begin
            {_DUE_NOW.format(account="new.account_id")};
            return null;
        end
    """,
    "schedule_due_of_schedule": f"""
        begin
            {_DUE_NOW.format(account="coalesce(new.account_id, old.account_id)")};
            return null;
        end
    """,
    "schedule_due_of_forgotten_jobs": """
        begin
            update schedule_due d set next_due_at = '-infinity', generation = d.generation + 1
            where d.account_id in (select distinct g.account_id from gone g);
            return null;
        end
    """,
}

_TRIGGERS = {
    "schedule_due_connected": (
        "crm_connections",
        "after insert on crm_connections for each row execute function schedule_due_of_connection()",
    ),
    "schedule_due_allowance": (
        "crm_connections",
        "after update of api_limit, api_allocation_share, api_allocation_calls on crm_connections "
        "for each row when (old.api_limit is distinct from new.api_limit "
        "or old.api_allocation_share is distinct from new.api_allocation_share "
        "or old.api_allocation_calls is distinct from new.api_allocation_calls) "
        "execute function schedule_due_of_connection()",
    ),
    "schedule_due_saved": (
        "sync_schedules",
        "after insert or delete on sync_schedules for each row execute function schedule_due_of_schedule()",
    ),
    "schedule_due_changed": (
        "sync_schedules",
        "after update on sync_schedules for each row when ("
        "(old.mode, old.interval_minutes, old.time_of_day, old.weekday, old.timezone, "
        "old.full_sync_requested_at) is distinct from (new.mode, new.interval_minutes, new.time_of_day, "
        "new.weekday, new.timezone, new.full_sync_requested_at)) "
        "execute function schedule_due_of_schedule()",
    ),
    "schedule_due_forgotten": (
        "scheduled_jobs",
        "after delete on scheduled_jobs referencing old table as gone for each statement "
        "execute function schedule_due_of_forgotten_jobs()",
    ),
}


def upgrade() -> None:
    op.create_table(
        "schedule_due",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column(
            "next_due_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("'-infinity'"),
            nullable=False,
        ),
        sa.Column("generation", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["crm_connections.account_id"],
            name=op.f("fk_schedule_due_account_id_crm_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_schedule_due")),
    )
    op.create_index(op.f("ix_schedule_due_next_due_at"), "schedule_due", ["next_due_at"])
    op.execute("insert into schedule_due (account_id) select account_id from crm_connections")
    for name, body in _FUNCTIONS.items():
        op.execute(f"create function {name}() returns trigger language plpgsql as $${body}$$")
    for name, (_, definition) in _TRIGGERS.items():
        op.execute(f"create trigger {name} {definition}")


def downgrade() -> None:
    for name, (table, _) in _TRIGGERS.items():
        op.execute(f"drop trigger {name} on {table}")
    for name in _FUNCTIONS:
        op.execute(f"drop function {name}()")
    op.drop_index(op.f("ix_schedule_due_next_due_at"), table_name="schedule_due")
    op.drop_table("schedule_due")
