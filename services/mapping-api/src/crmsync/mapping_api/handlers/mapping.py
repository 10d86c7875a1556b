"""The mapping and push policy: read, save a whole new version under the rules, list and diff (R1–R8, R15)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from crmsync.common.crm.interface import CrmError
from crmsync.common.crm.providers import DEFAULT_PROVIDER, provider_named
from crmsync.common.crm.roles import PERSON_KINDS
from crmsync.common.domain.account import StoredMapping
from crmsync.common.domain.fields import STANDARD_FIELDS_BY_KEY, DataType
from crmsync.common.domain.mapping import CrmObject, FieldKind, MappingRow, PushPolicy
from crmsync.common.domain.mapping_rules import DescribedField, Violation, check_mapping
from crmsync.common.domain.schedule import job_id_for
from crmsync.common.messages import RunSync, SyncKind, SyncReason
from crmsync.mapping_api.handlers.errors import Conflict, CrmUnavailable, Invalid, MappingRefused, NotFound
from crmsync.mapping_api.handlers.ports import CrmPort, Stores, Transactions
from crmsync.mapping_api.values import VersionSummary

Describes = tuple[Mapping[str, DescribedField] | None, Mapping[str, DescribedField] | None]


@dataclass(frozen=True)
class RowInput:
    """A mapping row as a client sends it: a standard field may leave its data type out."""

    destination: str
    kind: FieldKind = FieldKind.STANDARD
    lead_source: str | None = None
    contact_source: str | None = None
    data_type: DataType | None = None
    allow_push: bool | None = None


@dataclass(frozen=True)
class MappingView:
    """A saved mapping with the policy that decides its rows' effective Allow Push."""

    mapping: StoredMapping
    policy: PushPolicy


@dataclass(frozen=True)
class SaveResult(MappingView):
    checked_against_crm: bool = False
    new_sources: list[str] = field(default_factory=list)
    full_sync_job_id: str | None = None


@dataclass(frozen=True)
class MappingDiff:
    from_version: int
    to_version: int
    added: list[MappingRow]
    removed: list[MappingRow]
    changed: list[tuple[str, dict[str, list[object]]]]
    policy: PushPolicy


def rows_from_input(rows: Sequence[RowInput]) -> list[MappingRow]:
    """Returns the rows with their data types; a custom field must name its own (R6)."""
    resolved = []
    for index, row in enumerate(rows):
        data_type = row.data_type
        if data_type is None:
            if row.kind == FieldKind.CUSTOM:
                raise Invalid("a custom field needs a data_type", field=f"rows[{index}].data_type")
            standard = STANDARD_FIELDS_BY_KEY.get(row.destination)
            # An unknown standard field is reported by the rule checks (R1); any type will do here.
            data_type = standard.data_type if standard else DataType.TEXT
        resolved.append(MappingRow(**{**vars(row), "data_type": data_type}))
    return resolved


async def saved_mapping(stores: Stores, account_id: str, version: int | None = None) -> StoredMapping:
    """Returns a version of the account's mapping, the newest when `version` is None."""
    stored = await stores.mappings.get(account_id, version)
    if stored is None:
        raise NotFound(
            f"mapping version {version} does not exist" if version else "the account has no mapping yet",
            field="version",
        )
    return stored


async def read_mapping(tx: Transactions, *, account_id: str, version: int | None = None) -> MappingView:
    """Returns a version of the mapping (the newest when None) and the push policy."""
    async with tx.read() as stores:
        stored = await saved_mapping(stores, account_id, version)
        return MappingView(stored, await stores.policies.get(account_id))


async def list_versions(tx: Transactions, *, account_id: str) -> list[VersionSummary]:
    """Returns every mapping version of the account with its row count, newest first."""
    async with tx.read() as stores:
        return await stores.mappings.versions(account_id)


async def diff_versions(
    tx: Transactions, *, account_id: str, from_version: int, to_version: int
) -> MappingDiff:
    """Returns what changed between two saved versions."""
    async with tx.read() as stores:
        before = await saved_mapping(stores, account_id, from_version)
        after = await saved_mapping(stores, account_id, to_version)
        policy = await stores.policies.get(account_id)
    added, removed, changed = diff_rows(before.rows, after.rows)
    return MappingDiff(from_version, to_version, added, removed, changed, policy)


async def describe_crm(stores: Stores, *, account_id: str, crm: CrmPort) -> Describes:
    """Returns the live Lead and Contact describes, or (None, None) when no connection exists yet."""
    connection = await stores.connections.get(account_id)
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


async def rule_violations(
    stores: Stores, *, account_id: str, rows: Sequence[MappingRow], policy: PushPolicy, crm: CrmPort
) -> tuple[list[Violation], bool]:
    """Returns the rules the rows break against the live describes and the account's CRM's
    e-mail fields (R1-R6, R8), and whether they were checked against the CRM."""
    lead, contact = await describe_crm(stores, account_id=account_id, crm=crm)
    connection = await stores.connections.get(account_id)
    provider = provider_named(connection.provider if connection is not None else DEFAULT_PROVIDER)
    violations = check_mapping(
        rows,
        lead_describe=lead,
        contact_describe=contact,
        policy=policy,
        email_fields={kind: provider.email_field(kind) for kind in PERSON_KINDS},
    )
    return violations, lead is not None


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
    tx: Transactions,
    *,
    account_id: str,
    rows: Sequence[RowInput],
    note: str | None,
    crm: CrmPort,
    now: datetime,
) -> SaveResult:
    """Returns the saved new version; refuses (MappingRefused) a mapping that breaks a rule.

    A mapping that reads a CRM field it did not read before flags a full sync and
    enqueues it in the same transaction (R15).
    """
    resolved = rows_from_input(rows)
    async with tx.begin() as stores:
        return await _save(stores, account_id=account_id, rows=resolved, note=note, crm=crm, now=now)


async def _save(
    stores: Stores,
    *,
    account_id: str,
    rows: Sequence[MappingRow],
    note: str | None,
    crm: CrmPort,
    now: datetime,
) -> SaveResult:
    policy = await stores.policies.get(account_id)
    violations, checked = await rule_violations(
        stores, account_id=account_id, rows=rows, policy=policy, crm=crm
    )
    if violations:
        raise MappingRefused(violations)
    # An account made without crmsync-admin has no version 1 yet; this save starts its history.
    previous = await stores.mappings.get(account_id)
    if previous is not None and tuple(rows) == previous.rows:
        # Saving what is already saved changes nothing: no new version, no sync.
        return SaveResult(previous, policy, checked)
    stored = await stores.mappings.add(
        account_id=account_id, version=(previous.version if previous else 0) + 1, note=note, rows=rows
    )
    new_sources = sorted(source_pairs(rows) - source_pairs(previous.rows if previous else ()))
    job_id = await request_full_sync(stores, account_id=account_id, now=now) if new_sources else None
    return SaveResult(stored, policy, checked, new_sources, job_id)


async def request_full_sync(stores: Stores, *, account_id: str, now: datetime) -> str:
    """Flags a full sync (R15) and enqueues it; returns the job id.

    The id is the scheduler's for a new-field full sync requested at that second,
    so the scheduler seeing the flag emits the same job and the puller runs it once (R18).
    """
    requested = now.astimezone(UTC).replace(microsecond=0)
    await stores.schedules.request_full_sync(account_id, at=requested)
    job = RunSync(
        job_id=job_id_for(account_id=account_id, kind="full", slot=requested),
        account_id=account_id,
        kind=SyncKind.FULL,
        reason=SyncReason.NEW_FIELD,
        requested_at=requested,
    )
    stores.outbox.sync_job(job)
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
    tx: Transactions, *, account_id: str, default_allow_push: bool, crm: CrmPort, now: datetime
) -> MappingView:
    """Returns the mapping under the new policy; refused when a mapped field that would then push
    is read-only (R4)."""
    policy = PushPolicy(default_allow_push=default_allow_push)
    async with tx.begin() as stores:
        current = await saved_mapping(stores, account_id)
        violations, _ = await rule_violations(
            stores, account_id=account_id, rows=current.rows, policy=policy, crm=crm
        )
        if violations:
            raise MappingRefused(violations)
        await stores.policies.put(account_id, policy, updated_at=now)
    return MappingView(current, policy)


async def set_field_push(
    tx: Transactions,
    *,
    account_id: str,
    destination: str,
    allow_push: bool | None,
    crm: CrmPort,
    now: datetime,
) -> SaveResult:
    """Returns the new mapping version with one field's Allow Push changed (R8)."""
    async with tx.begin() as stores:
        current = await saved_mapping(stores, account_id)
        if destination not in {r.destination for r in current.rows}:
            raise NotFound(f"{destination!r} is not in the mapping", field="destination")
        rows = [
            replace(r, allow_push=allow_push) if r.destination == destination else r for r in current.rows
        ]
        note = f"Allow Push of {destination} set to {allow_push}"
        return await _save(stores, account_id=account_id, rows=rows, note=note, crm=crm, now=now)
