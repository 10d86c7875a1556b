"""The mapping: read it, save a whole new version under the rules, list and diff versions (R1–R8, R15)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.crm.interface import CrmError
from crmsync.common.db.schema import CrmConnection, MappingRowRecord, MappingVersion, SyncSchedule
from crmsync.common.db.schema import PushPolicy as PushPolicyRecord
from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import CrmObject, FieldKind, MappingRow, PushPolicy
from crmsync.common.domain.mapping_rules import DescribedField, check_mapping
from crmsync.common.domain.schedule import job_id_for
from crmsync.common.kafka.outbox import enqueue
from crmsync.common.kafka.topics import SYNC_JOBS
from crmsync.common.messages import RunSync, SyncKind, SyncReason
from crmsync.mapping_api.handlers.errors import Conflict, CrmUnavailable, MappingRefused, NotFound
from crmsync.mapping_api.handlers.ports import CrmPort


@dataclass(frozen=True)
class StoredMapping:
    version: int
    note: str | None
    created_at: datetime
    rows: tuple[MappingRow, ...]


@dataclass(frozen=True)
class SaveResult:
    mapping: StoredMapping
    checked_against_crm: bool
    new_sources: list[str] = field(default_factory=list)
    full_sync_job_id: str | None = None


def _row(record: MappingRowRecord) -> MappingRow:
    return MappingRow(
        destination=record.destination,
        data_type=DataType(record.data_type),
        kind=FieldKind(record.kind),
        lead_source=record.lead_source,
        contact_source=record.contact_source,
        allow_push=record.allow_push,
    )


async def load_policy(session: AsyncSession, *, account_id: str) -> PushPolicy:
    """Returns the account's push policy (two-way when none was stored, R8)."""
    record = await session.get(PushPolicyRecord, account_id)
    return PushPolicy(default_allow_push=record.default_allow_push if record else True)


async def load_mapping(
    session: AsyncSession, *, account_id: str, version: int | None = None
) -> StoredMapping:
    """Returns a version of the account's mapping, the newest when `version` is None."""
    query = select(MappingVersion).where(MappingVersion.account_id == account_id)
    if version is None:
        query = query.order_by(MappingVersion.version.desc()).limit(1)
    else:
        query = query.where(MappingVersion.version == version)
    record = await session.scalar(query)
    if record is None:
        raise NotFound(
            f"mapping version {version} does not exist" if version else "the account has no mapping yet",
            field="version",
        )
    rows = await session.scalars(
        select(MappingRowRecord)
        .where(MappingRowRecord.account_id == account_id, MappingRowRecord.mapping_version_id == record.id)
        .order_by(MappingRowRecord.position)
    )
    return StoredMapping(record.version, record.note, record.created_at, tuple(_row(r) for r in rows))


async def list_versions(session: AsyncSession, *, account_id: str) -> list[tuple[MappingVersion, int]]:
    """Returns every mapping version of the account with its row count, newest first."""
    counts = (
        select(MappingRowRecord.mapping_version_id, func.count().label("n"))
        .where(MappingRowRecord.account_id == account_id)
        .group_by(MappingRowRecord.mapping_version_id)
        .subquery()
    )
    result = await session.execute(
        select(MappingVersion, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.mapping_version_id == MappingVersion.id)
        .where(MappingVersion.account_id == account_id)
        .order_by(MappingVersion.version.desc())
    )
    return [(version, int(count)) for version, count in result.all()]


async def describe_crm(
    session: AsyncSession, *, account_id: str, crm: CrmPort
) -> tuple[Mapping[str, DescribedField] | None, Mapping[str, DescribedField] | None]:
    """Returns the live Lead and Contact describes, or (None, None) when no connection exists yet."""
    connection = await session.get(CrmConnection, account_id)
    if connection is None:
        return None, None
    try:
        async with crm.connect(connection) as connector:
            lead = await connector.describe(CrmObject.LEAD.value)
            contact = await connector.describe(CrmObject.CONTACT.value)
    except CrmError as exc:
        raise CrmUnavailable(
            f"the CRM could not be described to check the mapping: {exc.message}", field="connection"
        ) from exc
    except ValueError as exc:
        raise Conflict(f"the stored CRM connection cannot be used: {exc}", field="connection") from exc
    return lead.fields, contact.fields


async def add_mapping_version(
    session: AsyncSession, *, account_id: str, version: int, note: str | None, rows: Sequence[MappingRow]
) -> MappingVersion:
    """Returns a new stored version of the account's mapping holding `rows`, in order."""
    record = MappingVersion(account_id=account_id, version=version, note=note)
    session.add(record)
    await session.flush()
    session.add_all(
        MappingRowRecord(
            account_id=account_id,
            mapping_version_id=record.id,
            position=position,
            destination=row.destination,
            kind=row.kind.value,
            lead_source=row.lead_source,
            contact_source=row.contact_source,
            data_type=row.data_type.value,
            allow_push=row.allow_push,
        )
        for position, row in enumerate(rows)
    )
    return record


def source_pairs(rows: Sequence[MappingRow]) -> set[str]:
    """Returns every CRM field the rows read, as Object.Field."""
    pairs = set()
    for row in rows:
        for crm_object in CrmObject:
            source = row.source_for(crm_object)
            if source:
                pairs.add(f"{crm_object.value}.{source}")
    return pairs


async def save_mapping(
    session: AsyncSession,
    *,
    account_id: str,
    rows: Sequence[MappingRow],
    note: str | None,
    crm: CrmPort,
    now: datetime,
    policy: PushPolicy | None = None,
) -> SaveResult:
    """Returns the saved new version; refuses (MappingRefused) a mapping that breaks a rule.

    A mapping that reads a CRM field it did not read before flags a full sync and
    enqueues it in the same transaction (R15).
    """
    policy = policy or await load_policy(session, account_id=account_id)
    lead, contact = await describe_crm(session, account_id=account_id, crm=crm)
    violations = check_mapping(rows, lead_describe=lead, contact_describe=contact, policy=policy)
    if violations:
        raise MappingRefused(violations)
    try:
        previous = await load_mapping(session, account_id=account_id)
    except NotFound:
        # An account made without crmsync-admin has no version 1 yet; this save starts its history.
        previous = StoredMapping(0, None, now, ())
    if previous.version and tuple(rows) == previous.rows:
        # Saving what is already saved changes nothing: no new version, no sync.
        return SaveResult(previous, lead is not None)
    version = await add_mapping_version(
        session, account_id=account_id, version=previous.version + 1, note=note, rows=rows
    )
    new_sources = sorted(source_pairs(rows) - source_pairs(previous.rows))
    job_id = None
    if new_sources:
        job_id = await request_full_sync(session, account_id=account_id, now=now)
    await session.flush()
    await session.refresh(version)
    stored = StoredMapping(version.version, note, version.created_at, tuple(rows))
    return SaveResult(stored, lead is not None, new_sources, job_id)


async def request_full_sync(session: AsyncSession, *, account_id: str, now: datetime) -> str:
    """Flags a full sync (R15) and enqueues it; returns the job id.

    The id is the scheduler's for a new-field full sync requested at that second,
    so the scheduler seeing the flag emits the same job and the puller runs it once (R18).
    """
    requested = now.astimezone(UTC).replace(microsecond=0)
    schedule = await session.get(SyncSchedule, account_id)
    if schedule is None:
        schedule = SyncSchedule(account_id=account_id, mode="automatic", timezone="UTC")
        session.add(schedule)
    schedule.full_sync_requested_at = requested
    job = RunSync(
        job_id=job_id_for(account_id=account_id, kind="full", slot=requested),
        account_id=account_id,
        kind=SyncKind.FULL,
        reason=SyncReason.NEW_FIELD,
        requested_at=requested,
    )
    enqueue(session, account_id=account_id, topic=SYNC_JOBS, key=account_id, message=job)
    return job.job_id


def diff_rows(
    before: Sequence[MappingRow], after: Sequence[MappingRow]
) -> tuple[list[MappingRow], list[MappingRow], list[tuple[str, dict[str, list[object]]]]]:
    """Returns (added, removed, changed) rows between two versions, matched by destination."""
    old = {r.destination: r for r in before}
    new = {r.destination: r for r in after}
    added = [r for d, r in new.items() if d not in old]
    removed = [r for d, r in old.items() if d not in new]
    changed = []
    for destination, row in new.items():
        if destination not in old:
            continue
        was = old[destination]
        changes: dict[str, list[object]] = {}
        for name in ("kind", "lead_source", "contact_source", "data_type", "allow_push"):
            a, b = getattr(was, name), getattr(row, name)
            if a != b:
                changes[name] = [a, b]
        if changes:
            changed.append((destination, changes))
    return added, removed, changed


async def set_default_push(
    session: AsyncSession, *, account_id: str, default_allow_push: bool, crm: CrmPort
) -> PushPolicy:
    """Returns the new policy; refused when a mapped field that would then push is read-only (R4)."""
    policy = PushPolicy(default_allow_push=default_allow_push)
    current = await load_mapping(session, account_id=account_id)
    lead, contact = await describe_crm(session, account_id=account_id, crm=crm)
    violations = check_mapping(current.rows, lead_describe=lead, contact_describe=contact, policy=policy)
    if violations:
        raise MappingRefused(violations)
    record = await session.get(PushPolicyRecord, account_id)
    if record is None:
        session.add(PushPolicyRecord(account_id=account_id, default_allow_push=default_allow_push))
    else:
        record.default_allow_push = default_allow_push
        record.updated_at = datetime.now(UTC)
    await session.flush()
    return policy


async def set_field_push(
    session: AsyncSession,
    *,
    account_id: str,
    destination: str,
    allow_push: bool | None,
    crm: CrmPort,
    now: datetime,
) -> SaveResult:
    """Returns the new mapping version with one field's Allow Push changed (R8)."""
    current = await load_mapping(session, account_id=account_id)
    if destination not in {r.destination for r in current.rows}:
        raise NotFound(f"{destination!r} is not in the mapping", field="destination")
    rows = [
        MappingRow(r.destination, r.data_type, r.kind, r.lead_source, r.contact_source, allow_push)
        if r.destination == destination
        else r
        for r in current.rows
    ]
    return await save_mapping(
        session,
        account_id=account_id,
        rows=rows,
        note=f"Allow Push of {destination} set to {allow_push}",
        crm=crm,
        now=now,
    )
