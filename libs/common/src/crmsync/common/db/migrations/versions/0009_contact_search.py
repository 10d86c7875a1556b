"""Contact search in a narrow table of its own, whose entries a first load builds after its rows (R19).

A trigram index maintained row by row was half of what PostgreSQL spent
storing a first full sync. Search entries now live in `contact_search`
(account, contact, kind, lower-cased text), kept by triggers on `contacts`
for every writer. A first full sync's COPY into an empty store writes no
entries: the account is marked pending in `contact_search_state` and,
until the entries are built at the end of the sync, search scans the
account's contacts. A large account's entries are then built in a table of
its own under the `contact_search_parts` schema, filled in one statement
and indexed with CREATE INDEX, a sorted build that costs less than the
same entries inserted one by one.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SEARCH_TEXT = (
    "lower(coalesce(email, '') || ' ' || coalesce(fields->>'first_name', '') || ' ' || "
    "coalesce(fields->>'last_name', '') || ' ' || coalesce(fields->>'company', ''))"
)

# The advisory lock space of an account's search entries ("srch"): writers share it, a build holds it.
LOCK_SPACE = 0x73726368

FUNCTIONS = (
    f"""
create function contact_search_text(email text, fields jsonb) returns text
    language sql immutable parallel safe
    return {SEARCH_TEXT}
""",
    f"""
create function contact_search_sync() returns trigger language plpgsql as $$
declare
    acct text := coalesce(new.account_id, old.account_id);
    part text;
begin
    -- Waits for a build of this account's entries to commit, then writes where it put them.
    perform pg_advisory_xact_lock_shared({LOCK_SPACE}, hashtext(acct));
    select relname into part from contact_search_state where account_id = acct;
    if part is null then
        if tg_op = 'DELETE' then
            delete from contact_search where account_id = acct and contact_id = old.id;
        else
            insert into contact_search (account_id, contact_id, crm_object, search_text)
            values (acct, new.id, new.crm_object, contact_search_text(new.email, new.fields))
            on conflict (account_id, contact_id) do update
                set crm_object = excluded.crm_object, search_text = excluded.search_text;
        end if;
    elsif tg_op = 'DELETE' then
        -- The account's own table is gone when the account itself is being deleted.
        if to_regclass(format('contact_search_parts.%I', part)) is not null then
            execute format('delete from contact_search_parts.%I where contact_id = $1', part) using old.id;
        end if;
    else
        execute format(
            'insert into contact_search_parts.%I (account_id, contact_id, crm_object, search_text) '
            'values ($1, $2, $3, $4) on conflict (account_id, contact_id) do update '
            'set crm_object = excluded.crm_object, search_text = excluded.search_text', part)
        using acct, new.id, new.crm_object, contact_search_text(new.email, new.fields);
    end if;
    return null;
end $$
""",
    """
create function contact_search_part_drop() returns trigger language plpgsql as $$
begin
    if old.relname is not null then
        execute format('drop table if exists contact_search_parts.%I', old.relname);
    end if;
    return null;
end $$
""",
)

TRIGGERS = (
    """
create trigger contacts_search_insert after insert on contacts for each row
    when (current_setting('crmsync.search_deferred', true) is distinct from 'on')
    execute function contact_search_sync()""",
    """
create trigger contacts_search_update after update of email, fields, crm_object on contacts for each row
    when (old.crm_object is distinct from new.crm_object
          or contact_search_text(old.email, old.fields) is distinct from contact_search_text(new.email, new.fields))
    execute function contact_search_sync()""",
    """
create trigger contacts_search_delete after delete on contacts for each row
    execute function contact_search_sync()""",
    """
create trigger contact_search_state_drop after delete on contact_search_state for each row
    execute function contact_search_part_drop()""",
)


def upgrade() -> None:
    op.execute("create schema if not exists contact_search_parts")
    op.create_table(
        "contact_search",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column("crm_object", sa.Text(), nullable=True),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_contact_search_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "contact_id", name=op.f("pk_contact_search")),
    )
    op.create_table(
        "contact_search_state",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("relname", sa.Text(), nullable=True),
        sa.Column("pending_since", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_contact_search_state_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_contact_search_state")),
    )
    for function in FUNCTIONS:
        op.execute(function)
    op.execute(
        "insert into contact_search (account_id, contact_id, crm_object, search_text) "
        "select account_id, id, crm_object, contact_search_text(email, fields) from contacts"
    )
    op.create_index(
        "ix_contact_search_search_text_trgm",
        "contact_search",
        ["search_text"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )
    op.drop_index("ix_contacts_search_text_trgm", table_name="contacts")
    op.drop_column("contacts", "search_text")
    for trigger in TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    for trigger in ("contacts_search_insert", "contacts_search_update", "contacts_search_delete"):
        op.execute(f"drop trigger {trigger} on contacts")
    op.add_column(
        "contacts",
        sa.Column("search_text", sa.Text(), sa.Computed(SEARCH_TEXT, persisted=True), nullable=True),
    )
    op.create_index(
        "ix_contacts_search_text_trgm",
        "contacts",
        ["search_text"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )
    op.drop_table("contact_search_state")
    op.drop_table("contact_search")
    op.execute("drop schema contact_search_parts cascade")
    op.execute("drop function contact_search_part_drop()")
    op.execute("drop function contact_search_sync()")
    op.execute("drop function contact_search_text(text, jsonb)")
