"""The crmsync schema: every tenant row carries account_id.

Alembic migrations under db/migrations are the source of truth for the
database; tests check that these models and the migrations agree.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Text,
    Time,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column

from crmsync.common.db.ids import new_id

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        dict[str, Any]: JSONB,
        datetime: DateTime(timezone=True),
        uuid.UUID: UUID(as_uuid=True),
    }


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


def _account_fk() -> Any:
    return mapped_column(Text, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False)


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _now()
    __table_args__ = (CheckConstraint("id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'", name="id_slug"),)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[str] = _account_fk()
    name: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    prefix: Mapped[str] = mapped_column(Text, nullable=False)
    key_hash: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    role: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _now()
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    __table_args__ = (
        CheckConstraint("role in ('admin', 'reader')", name="role"),
        Index(None, "account_id"),
    )


class CrmConnection(Base):
    __tablename__ = "crm_connections"
    account_id: Mapped[str] = mapped_column(
        Text, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    provider: Mapped[str] = mapped_column(Text, nullable=False, server_default="salesforce")
    instance_url: Mapped[str | None] = mapped_column(Text)
    login_url: Mapped[str] = mapped_column(Text, nullable=False)
    auth_method: Mapped[str] = mapped_column(Text, nullable=False)
    client_id: Mapped[str] = mapped_column(Text, nullable=False)
    username: Mapped[str | None] = mapped_column(Text)
    # Fernet token of a JSON object holding client_secret / refresh_token / private_key.
    secrets_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    api_version: Mapped[str] = mapped_column(Text, nullable=False, server_default="60.0")
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="untested")
    status_message: Mapped[str | None] = mapped_column(Text)
    last_checked_at: Mapped[datetime | None]
    api_usage: Mapped[int | None] = mapped_column(Integer)
    api_limit: Mapped[int | None] = mapped_column(Integer)
    # crmsync's part of the CRM's daily API limit: a share of it or a number of calls, never both.
    api_allocation_share: Mapped[float | None] = mapped_column(Float)
    api_allocation_calls: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    __table_args__ = (
        CheckConstraint(
            "auth_method in ('client_credentials', 'refresh_token', 'jwt_bearer')", name="auth_method"
        ),
        CheckConstraint("status in ('untested', 'connected', 'failed')", name="status"),
        CheckConstraint(
            "api_allocation_share is null or (api_allocation_share > 0 and api_allocation_share <= 1)",
            name="api_allocation_share",
        ),
        CheckConstraint(
            "api_allocation_calls is null or api_allocation_calls > 0", name="api_allocation_calls"
        ),
        CheckConstraint(
            "api_allocation_share is null or api_allocation_calls is null", name="api_allocation_one"
        ),
    )


class CrmApiUsage(Base):
    """Calls crmsync took from an account's API allocation on one CRM day (UTC), in leases."""

    __tablename__ = "crm_api_usage"
    account_id: Mapped[str] = mapped_column(
        Text, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    updated_at: Mapped[datetime] = _now()
    __table_args__ = (CheckConstraint("calls >= 0", name="calls"),)


class MappingVersion(Base):
    __tablename__ = "mapping_versions"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = _account_fk()
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    __table_args__ = (UniqueConstraint("account_id", "version"),)


class MappingRowRecord(Base):
    __tablename__ = "mapping_rows"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = _account_fk()
    mapping_version_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("mapping_versions.id", ondelete="CASCADE"), nullable=False
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    destination: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    lead_source: Mapped[str | None] = mapped_column(Text)
    contact_source: Mapped[str | None] = mapped_column(Text)
    data_type: Mapped[str] = mapped_column(Text, nullable=False)
    # NULL means "use the account's default push policy" (R8).
    allow_push: Mapped[bool | None] = mapped_column(Boolean)
    __table_args__ = (
        UniqueConstraint("mapping_version_id", "destination"),
        CheckConstraint("kind in ('standard', 'custom')", name="kind"),
        Index(None, "account_id", "mapping_version_id"),
    )


class PushPolicy(Base):
    __tablename__ = "push_policies"
    account_id: Mapped[str] = mapped_column(
        Text, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    default_allow_push: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    updated_at: Mapped[datetime] = _now()


class SyncSchedule(Base):
    __tablename__ = "sync_schedules"
    account_id: Mapped[str] = mapped_column(
        Text, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    mode: Mapped[str] = mapped_column(Text, nullable=False, server_default="automatic")
    interval_minutes: Mapped[int | None] = mapped_column(Integer)
    time_of_day: Mapped[time | None] = mapped_column(Time)
    weekday: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(Text, nullable=False, server_default="UTC")
    # Set when the mapping gains a field (R15); cleared by the next successful full sync.
    full_sync_requested_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = _now()
    __table_args__ = (
        CheckConstraint(
            "mode in ('automatic', 'interval', 'hourly', 'daily', 'weekly', 'manual')", name="mode"
        ),
        CheckConstraint("weekday is null or weekday between 0 and 6", name="weekday"),
    )


# Fill factor of tables whose rows are updated soon and often after they are written.
FILLFACTOR_UPDATED_IN_PLACE = 80


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[str] = _account_fk()
    # 'Lead' or 'Contact' for CRM-backed contacts (R5), NULL for local-only ones.
    crm_object: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    email_lower: Mapped[str | None] = mapped_column(Text, Computed("lower(email)", persisted=True))
    fields: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    # destination -> {"origin": "crm" | source of the event, "at": ISO time}; R12, R13.
    field_meta: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    crm_modstamp: Mapped[datetime | None]
    crm_account_external_id: Mapped[str | None] = mapped_column(Text)
    owner_external_id: Mapped[str | None] = mapped_column(Text)
    converted_from_lead_id: Mapped[str | None] = mapped_column(Text)
    last_seen_run_id: Mapped[uuid.UUID | None]
    # Set when a score or opt-out changed locally; the outbound job sends and clears it (R11).
    outbound_pending_at: Mapped[datetime | None]
    # What search matches (name, e-mail, company, lower-cased), computed on read; the entries
    # searched live in contact_search (R19).
    search_text: Mapped[str | None] = column_property(func.contact_search_text(email, fields))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    __table_args__ = (
        UniqueConstraint("account_id", "external_id"),
        CheckConstraint("crm_object is null or crm_object in ('Lead', 'Contact')", name="crm_object"),
        Index(None, "account_id", "email_lower"),
        Index(None, "account_id", "crm_object", "id"),
        Index(None, "account_id", "id"),
        Index(
            "ix_contacts_outbound_pending",
            "account_id",
            postgresql_where=text("outbound_pending_at is not null"),
        ),
        Index(
            "ix_contacts_converted_from_lead",
            "account_id",
            "converted_from_lead_id",
            postgresql_where=text("converted_from_lead_id is not null"),
        ),
        # Room in each page lets an update that leaves the indexed columns alone (a
        # pushed title, a pulled phone) stay a heap-only tuple: no entry in any of the
        # six indexes.
        {"postgresql_with": {"fillfactor": FILLFACTOR_UPDATED_IN_PLACE}},
    )


class ContactSearch(Base):
    """A contact's search entry (R19), kept by triggers on contacts; migration 0009 says the rest."""

    __tablename__ = "contact_search"
    account_id: Mapped[str] = mapped_column(
        Text, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    crm_object: Mapped[str | None] = mapped_column(Text)
    search_text: Mapped[str] = mapped_column(Text, nullable=False)
    __table_args__ = (
        Index(
            "ix_contact_search_search_text_trgm",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
    )


class ContactSearchState(Base):
    """Where an account's search entries are: its own table (relname), or pending since a first load."""

    __tablename__ = "contact_search_state"
    account_id: Mapped[str] = mapped_column(
        Text, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    relname: Mapped[str | None] = mapped_column(Text)
    pending_since: Mapped[datetime | None]


class CrmAccount(Base):
    __tablename__ = "crm_accounts"
    account_id: Mapped[str] = mapped_column(
        Text, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    external_id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    industry: Mapped[str | None] = mapped_column(Text)
    website: Mapped[str | None] = mapped_column(Text)
    crm_modstamp: Mapped[datetime | None]


class CrmOwner(Base):
    __tablename__ = "crm_owners"
    account_id: Mapped[str] = mapped_column(
        Text, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    external_id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    crm_modstamp: Mapped[datetime | None]


class CrmOpportunity(Base):
    __tablename__ = "crm_opportunities"
    account_id: Mapped[str] = mapped_column(
        Text, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    external_id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    stage: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    close_date: Mapped[date | None] = mapped_column(Date)
    crm_account_external_id: Mapped[str | None] = mapped_column(Text)
    contact_external_id: Mapped[str | None] = mapped_column(Text)
    crm_modstamp: Mapped[datetime | None]
    __table_args__ = (
        Index(None, "account_id", "crm_account_external_id"),
        Index(None, "account_id", "contact_external_id"),
    )


class SyncState(Base):
    """Per CRM entity: the connector's opaque cursor the next incremental resumes from (R15, R18)."""

    __tablename__ = "sync_state"
    account_id: Mapped[str] = mapped_column(
        Text, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    entity: Mapped[str] = mapped_column(Text, primary_key=True)
    change_cursor: Mapped[str | None] = mapped_column(Text)
    watermark: Mapped[datetime | None]
    watermark_id: Mapped[str | None] = mapped_column(Text)
    deleted_watermark: Mapped[datetime | None]
    last_full_at: Mapped[datetime | None]
    last_incremental_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = _now()


# A full or incremental sync that will still start or resume: queued, running,
# or paused or failed with a time to try again.
OPEN_SYNC_RUN = (
    "kind in ('full', 'incremental') and (status in ('queued', 'running') "
    "or (status in ('paused', 'failed') and next_attempt_at is not null))"
)


class SyncRun(Base):
    __tablename__ = "sync_runs"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[str] = _account_fk()
    job_id: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="queued")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    pulled: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    updated: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    deleted: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    skipped: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    errors: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    # Resume point of a paused or interrupted run (entity, cursor, phase).
    progress: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    requested_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _now()
    # Local values the run's repair pass found missing from the CRM (R25); null: no pass ran.
    drift_found: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (
        UniqueConstraint("account_id", "job_id"),
        CheckConstraint("kind in ('full', 'incremental', 'scores_optouts')", name="kind"),
        CheckConstraint("status in ('queued', 'running', 'succeeded', 'failed', 'paused')", name="status"),
        Index(None, "account_id", "created_at"),
        Index(None, "account_id", "kind", "status", "finished_at"),
        # The puller's dispatcher reads each account's oldest open sync from here.
        Index(
            "ix_sync_runs_open",
            "account_id",
            "requested_at",
            "created_at",
            postgresql_where=text(OPEN_SYNC_RUN),
        ),
        # The scheduler's housekeeping deletes finished runs oldest first.
        Index(None, "finished_at"),
    )


class SyncRunSighting(Base):
    """A contact a full sync found unchanged in the CRM: it saw the record, so R16 keeps it.

    Rows the run writes carry its id in `contacts.last_seen_run_id` already;
    recording the unchanged ones here instead spares rewriting every wide
    contact row on each 14-day full sync. The run's rows go when it ends.
    """

    __tablename__ = "sync_run_sightings"
    run_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)


class EmailSuppression(Base):
    """An e-mail whose contact was opted out locally when its CRM record was deleted (R23).

    A CRM record that comes back with this e-mail is opted out at once.
    """

    __tablename__ = "email_suppressions"
    account_id: Mapped[str] = mapped_column(
        Text, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    email_lower: Mapped[str] = mapped_column(Text, primary_key=True)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _now()


class PushLog(Base):
    __tablename__ = "push_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = _account_fk()
    event_id: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str | None] = mapped_column(Text)
    contact_id: Mapped[uuid.UUID | None]
    crm_object: Mapped[str | None] = mapped_column(Text)
    crm_id: Mapped[str | None] = mapped_column(Text)
    operation: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    sent_fields: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    # Why each changed field was or was not sent (R8, R9, R11, R12, R13).
    decisions: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    error_code: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    occurred_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    __table_args__ = (
        UniqueConstraint("account_id", "event_id"),
        CheckConstraint("operation in ('create', 'update', 'none', 'outbound')", name="operation"),
        CheckConstraint("status in ('pending', 'waiting', 'succeeded', 'failed', 'skipped')", name="status"),
        Index(None, "account_id", "created_at"),
        Index(None, "account_id", "contact_id"),
        # Every entry is written pending, then updated with the CRM's answer.
        {"postgresql_with": {"fillfactor": FILLFACTOR_UPDATED_IN_PLACE}},
    )


class PushDelivery(Base):
    """A contact's push waiting for its next attempt after a transient failure (R24).

    One waiting row per account and contact: later changes of the contact join
    it (newest value per field) instead of overtaking it. `fields` holds, per
    CRM field, {value, occurred_at, event_id, field}; `event_ids` the events
    whose push log entries wait on it. A row past the horizon turns `failed`.
    """

    __tablename__ = "push_deliveries"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = _account_fk()
    contact_id: Mapped[uuid.UUID] = mapped_column(nullable=False)
    operation: Mapped[str] = mapped_column(Text, nullable=False)
    crm_object: Mapped[str] = mapped_column(Text, nullable=False)
    crm_id: Mapped[str | None] = mapped_column(Text)
    email_lower: Mapped[str | None] = mapped_column(Text)
    fields: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    event_ids: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")
    )
    state: Mapped[str] = mapped_column(Text, nullable=False)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    first_failed_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_error_code: Mapped[str | None] = mapped_column(Text)
    last_error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    __table_args__ = (
        CheckConstraint("operation in ('create', 'update')", name="operation"),
        CheckConstraint("state in ('waiting', 'failed')", name="state"),
        Index(
            "uq_push_deliveries_waiting_contact",
            "account_id",
            "contact_id",
            unique=True,
            postgresql_where=text("state = 'waiting'"),
        ),
        Index("ix_push_deliveries_due", "next_attempt_at", postgresql_where=text("state = 'waiting'")),
        Index(None, "account_id", "state", "last_error_code"),
    )


class ScheduledJob(Base):
    """Jobs the scheduler has emitted, by deterministic id (R18)."""

    __tablename__ = "scheduled_jobs"
    account_id: Mapped[str] = mapped_column(
        Text, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    job_id: Mapped[str] = mapped_column(Text, primary_key=True)
    topic: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    slot_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    emitted_at: Mapped[datetime] = _now()
    __table_args__ = (Index(None, "account_id", "kind", "slot_at"), Index(None, "slot_at"))


class ScheduleDue(Base):
    """When the scheduler next looks at an account: its next tick, or at once (triggers of migration 0010)."""

    __tablename__ = "schedule_due"
    account_id: Mapped[str] = mapped_column(
        Text, ForeignKey("crm_connections.account_id", ondelete="CASCADE"), primary_key=True
    )
    next_due_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=text("'-infinity'")
    )
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    __table_args__ = (Index(None, "next_due_at"),)


class OutboxMessage(Base):
    """Messages that must follow a database change, published after its commit."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = _account_fk()
    topic: Mapped[str] = mapped_column(Text, nullable=False)
    key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    value: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = _now()
    published_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at is null")),)
