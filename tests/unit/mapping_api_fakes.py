"""In-memory fakes of the mapping API's ports: the stores of one transaction, the unit of work, the CRM.

A transaction that ends in an error leaves the fake database as it found it, as
PostgreSQL would, so a test can assert that a refused use case changed nothing.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.interface import ApiBudget, CrmError, CrmField, ObjectDescribe
from crmsync.common.domain.account import StoredMapping
from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import DEFAULT_SALESFORCE_ROWS, MappingRow, PushPolicy
from crmsync.common.domain.redelivery import FAILED as GIVEN_UP
from crmsync.common.domain.redelivery import WAITING as WAITS
from crmsync.common.domain.redelivery import WaitingPush
from crmsync.common.domain.schedule import Schedule
from crmsync.common.messages import ContactChanged, RunOutbound, RunSync
from crmsync.mapping_api.operator_values import DeadLetterInfo, PushSummary
from crmsync.mapping_api.values import (
    AccountInfo,
    ApiKeyInfo,
    ContactInfo,
    ContactQuery,
    OwnerInfo,
    PushLogEntry,
    PushLogQuery,
    RunHistory,
    RunQuery,
    StoredSchedule,
    SyncRunInfo,
    VersionSummary,
)

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
SF_TYPE = {
    DataType.TEXT: "string",
    DataType.EMAIL: "email",
    DataType.BOOLEAN: "boolean",
    DataType.NUMBER: "double",
    DataType.SCORE: "double",
    DataType.DATE: "date",
    DataType.DATETIME: "datetime",
    DataType.MULTI_TEXT: "multipicklist",
}


@dataclass
class Data:
    """Every table the fakes hold, keyed as the database keys them."""

    accounts: dict[str, AccountInfo] = field(default_factory=dict)
    keys: list[ApiKeyInfo] = field(default_factory=list)
    key_hashes: dict[uuid.UUID, str] = field(default_factory=dict)
    connections: dict[str, CrmConnectionInfo] = field(default_factory=dict)
    connection_updated_at: dict[str, datetime] = field(default_factory=dict)
    mappings: dict[str, list[StoredMapping]] = field(default_factory=dict)
    policies: dict[str, PushPolicy] = field(default_factory=dict)
    schedules: dict[str, StoredSchedule] = field(default_factory=dict)
    runs: dict[str, list[SyncRunInfo]] = field(default_factory=dict)
    history: dict[str, RunHistory] = field(default_factory=dict)
    contacts: dict[str, list[ContactInfo]] = field(default_factory=dict)
    owners: dict[tuple[str, str], OwnerInfo] = field(default_factory=dict)
    push_log: dict[str, list[PushLogEntry]] = field(default_factory=dict)
    outbox: list[RunSync | ContactChanged] = field(default_factory=list)


class FakeAccounts:
    def __init__(self, data: Data) -> None:
        self.data = data

    async def get(self, account_id: str) -> AccountInfo | None:
        return self.data.accounts.get(account_id)

    async def add(self, *, account_id: str, name: str) -> AccountInfo:
        self.data.accounts[account_id] = AccountInfo(account_id, name, T0)
        return self.data.accounts[account_id]

    async def add_key(self, *, account_id: str, name: str, prefix: str, key_hash: str, role: str) -> None:
        key = ApiKeyInfo(uuid.uuid4(), account_id, name, prefix, role, T0)
        self.data.keys.append(key)
        self.data.key_hashes[key.id] = key_hash

    async def keys(self, account_id: str) -> list[ApiKeyInfo]:
        return [k for k in self.data.keys if k.account_id == account_id]

    async def revoke_key(self, key_id: uuid.UUID, *, at: datetime) -> None:
        self._update(key_id, revoked_at=at)

    async def active_key(self, key_hash: str) -> ApiKeyInfo | None:
        return next(
            (
                k
                for k in self.data.keys
                if self.data.key_hashes.get(k.id) == key_hash and k.revoked_at is None
            ),
            None,
        )

    async def mark_key_used(self, key_id: uuid.UUID, *, at: datetime, unless_used_since: datetime) -> None:
        key = next(k for k in self.data.keys if k.id == key_id)
        if key.last_used_at is None or key.last_used_at <= unless_used_since:
            self._update(key_id, last_used_at=at)

    def _update(self, key_id: uuid.UUID, **changes: object) -> None:
        self.data.keys = [replace(k, **changes) if k.id == key_id else k for k in self.data.keys]  # type: ignore[arg-type]


class FakeConnections:
    def __init__(self, data: Data) -> None:
        self.data = data

    async def get(self, account_id: str) -> CrmConnectionInfo | None:
        return self.data.connections.get(account_id)

    async def store(self, connection: CrmConnectionInfo, *, updated_at: datetime) -> None:
        self.data.connections[connection.account_id] = connection
        self.data.connection_updated_at[connection.account_id] = updated_at

    async def record_check(self, connection: CrmConnectionInfo) -> None:
        self.data.connections[connection.account_id] = connection


class FakeMappings:
    def __init__(self, data: Data) -> None:
        self.data = data

    async def get(self, account_id: str, version: int | None = None) -> StoredMapping | None:
        versions = self.data.mappings.get(account_id, [])
        if version is None:
            return versions[-1] if versions else None
        return next((v for v in versions if v.version == version), None)

    async def add(
        self, *, account_id: str, version: int, note: str | None, rows: Sequence[MappingRow]
    ) -> StoredMapping:
        stored = StoredMapping(version, note, T0, tuple(rows))
        self.data.mappings.setdefault(account_id, []).append(stored)
        return stored

    async def versions(self, account_id: str) -> list[VersionSummary]:
        versions = self.data.mappings.get(account_id, [])
        return [VersionSummary(v.version, v.note, v.created_at, len(v.rows)) for v in reversed(versions)]


class FakePolicies:
    def __init__(self, data: Data) -> None:
        self.data = data

    async def get(self, account_id: str) -> PushPolicy:
        return self.data.policies.get(account_id, PushPolicy(default_allow_push=True))

    async def put(self, account_id: str, policy: PushPolicy, *, updated_at: datetime) -> None:
        self.data.policies[account_id] = policy


class FakeSchedules:
    def __init__(self, data: Data) -> None:
        self.data = data

    async def get(self, account_id: str) -> StoredSchedule | None:
        return self.data.schedules.get(account_id)

    async def put(self, account_id: str, schedule: Schedule, *, updated_at: datetime) -> None:
        stored = self.data.schedules.get(account_id)
        self.data.schedules[account_id] = StoredSchedule(
            schedule, stored.full_sync_requested_at if stored else None
        )

    async def request_full_sync(self, account_id: str, *, at: datetime) -> None:
        stored = self.data.schedules.get(account_id) or StoredSchedule(Schedule(mode="automatic"))
        self.data.schedules[account_id] = replace(stored, full_sync_requested_at=at)


class FakeSyncRuns:
    def __init__(self, data: Data) -> None:
        self.data = data

    async def history(self, account_id: str) -> RunHistory:
        return self.data.history.get(account_id, RunHistory())

    async def page(self, account_id: str, q: RunQuery) -> list[SyncRunInfo]:
        runs = sorted(self.data.runs.get(account_id, []), key=lambda r: (r.created_at, r.id), reverse=True)
        return [
            r
            for r in runs
            if (q.kind is None or r.kind == q.kind)
            and (q.status is None or r.status == q.status)
            and (q.before is None or (r.created_at, r.id) < q.before)
        ][: q.limit]

    async def get(self, account_id: str, run_id: uuid.UUID) -> SyncRunInfo | None:
        return next((r for r in self.data.runs.get(account_id, []) if r.id == run_id), None)


class FakeContacts:
    def __init__(self, data: Data) -> None:
        self.data = data

    async def page(self, account_id: str, q: ContactQuery) -> list[ContactInfo]:
        def matches(c: ContactInfo) -> bool:
            text = " ".join(str(v) for v in (c.email, *c.fields.values()) if v).lower()
            return not q.search or q.search.lower() in text

        contacts = sorted(self.data.contacts.get(account_id, []), key=lambda c: c.id)
        return [
            c
            for c in contacts
            if (q.crm_object is None or c.crm_object == q.crm_object)
            and matches(c)
            and (q.after is None or c.id > q.after)
        ][: q.limit]

    async def count_by_object(self, account_id: str) -> dict[str | None, int]:
        counts: dict[str | None, int] = {}
        for contact in self.data.contacts.get(account_id, []):
            counts[contact.crm_object] = counts.get(contact.crm_object, 0) + 1
        return counts

    async def get(self, account_id: str, contact_id: uuid.UUID) -> ContactInfo | None:
        return next((c for c in self.data.contacts.get(account_id, []) if c.id == contact_id), None)

    async def owner(self, account_id: str, external_id: str) -> OwnerInfo | None:
        return self.data.owners.get((account_id, external_id))


class FakePushLog:
    def __init__(self, data: Data) -> None:
        self.data = data

    async def page(self, account_id: str, q: PushLogQuery) -> list[PushLogEntry]:
        entries = sorted(self.data.push_log.get(account_id, []), key=lambda e: e.id, reverse=True)
        return [
            e
            for e in entries
            if (q.contact_id is None or e.contact_id == q.contact_id)
            and (q.status is None or e.status == q.status)
            and (q.before is None or e.id < q.before)
        ][: q.limit]

    async def get(self, account_id: str, entry_id: int) -> PushLogEntry | None:
        return next((e for e in self.data.push_log.get(account_id, []) if e.id == entry_id), None)


class FakeOutbox:
    def __init__(self, data: Data) -> None:
        self.data = data

    def sync_job(self, job: RunSync) -> None:
        self.data.outbox.append(job)

    def outbound_job(self, job: RunOutbound) -> None:
        self.data.outbox.append(job)

    def contact_change(self, event: ContactChanged) -> None:
        self.data.outbox.append(event)


class FakeStores:
    def __init__(self, data: Data) -> None:
        self.accounts = FakeAccounts(data)
        self.connections = FakeConnections(data)
        self.mappings = FakeMappings(data)
        self.policies = FakePolicies(data)
        self.schedules = FakeSchedules(data)
        self.sync_runs = FakeSyncRuns(data)
        self.contacts = FakeContacts(data)
        self.push_log = FakePushLog(data)
        self.outbox = FakeOutbox(data)


class FakeTransactions:
    """The unit of work over `Data`: a block that raises leaves the data as it was."""

    def __init__(self, data: Data | None = None) -> None:
        self.data = data or Data()
        self.commits = 0

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[FakeStores]:
        before = copy.deepcopy(self.data.__dict__)
        try:
            yield FakeStores(self.data)
        except BaseException:
            self.data.__dict__.clear()
            self.data.__dict__.update(before)
            raise
        self.commits += 1

    @asynccontextmanager
    async def read(self) -> AsyncIterator[FakeStores]:
        before = copy.deepcopy(self.data.__dict__)
        try:
            yield FakeStores(self.data)
        finally:
            self.data.__dict__.clear()
            self.data.__dict__.update(before)

    @property
    def outbox(self) -> list[RunSync | ContactChanged]:
        return self.data.outbox


def describe_of(rows: Sequence[MappingRow], crm_object: str, **overrides: CrmField) -> ObjectDescribe:
    """Returns a describe holding every source the rows read on that object, typed to fit each row."""
    fields: dict[str, CrmField] = {}
    for row in rows:
        source = row.source_for(crm_object)
        if source:
            fields[source] = CrmField(name=source, label=source, type=SF_TYPE[row.data_type])
    fields.update(overrides)
    return ObjectDescribe(name=crm_object, label=crm_object, fields=fields)


class FakeConnector:
    def __init__(self, crm: FakeCrm) -> None:
        self.crm = crm

    async def describe(self, object_name: str) -> ObjectDescribe:
        if self.crm.error is not None:
            raise self.crm.error
        return self.crm.describes[object_name]

    async def count(self, object_name: str) -> int:
        return self.crm.counts.get(object_name, 0)

    async def budget(self) -> ApiBudget:
        return self.crm.budget

    async def sample_values(self, object_name: str, field_name: str, *, limit: int = 10) -> list[object]:
        return ["Acme", "Globex"][:limit]

    async def aclose(self) -> None:
        return None


@dataclass
class FakeCrm:
    """A CRM whose describes list the default mapping's sources, unless a test changes them."""

    describes: dict[str, ObjectDescribe] = field(
        default_factory=lambda: {o: describe_of(DEFAULT_SALESFORCE_ROWS, o) for o in ("Lead", "Contact")}
    )
    counts: dict[str, int] = field(default_factory=dict)
    budget: ApiBudget = field(default_factory=lambda: ApiBudget(used=1200, limit=15000))
    error: CrmError | None = None
    connected: list[CrmConnectionInfo] = field(default_factory=list)

    @asynccontextmanager
    async def connect(self, connection: CrmConnectionInfo) -> AsyncIterator[FakeConnector]:
        self.connected.append(connection)
        yield FakeConnector(self)

    async def check(self, connection: CrmConnectionInfo) -> None:
        return None


def connection_of(account_id: str) -> CrmConnectionInfo:
    return CrmConnectionInfo(
        account_id=account_id,
        provider="salesforce",
        login_url="https://login.example.test",
        auth_method="client_credentials",
        client_id="client-1",
        secrets_encrypted=b"sealed",
    )


# --- waiting and failed pushes, dead letters (R24) ---------------------------


@dataclass
class OperatorData(Data):
    """`Data` with the pushes in re-delivery and the dead-lettered events' push log entries."""

    deliveries: dict[str, list[WaitingPush]] = field(default_factory=dict)
    dead_letters: dict[str, list[DeadLetterInfo]] = field(default_factory=dict)


class FakeDeliveries:
    def __init__(self, data: OperatorData) -> None:
        self.data = data

    async def page(
        self, account_id: str, *, state: str | None, error_code: str | None, after_id: int | None, limit: int
    ) -> list[WaitingPush]:
        rows = [
            p
            for p in self.data.deliveries.get(account_id, [])
            if (state is None or p.state == state)
            and (error_code is None or p.last_error_code == error_code)
            and (after_id is None or (p.id or 0) > after_id)
        ]
        return sorted(rows, key=lambda p: p.id or 0)[:limit]

    async def get(self, account_id: str, push_id: int) -> WaitingPush | None:
        return next((p for p in self.data.deliveries.get(account_id, []) if p.id == push_id), None)

    async def summary(self, account_id: str) -> PushSummary:
        counts: dict[str, dict[str | None, int]] = {}
        for p in self.data.deliveries.get(account_id, []):
            by_code = counts.setdefault(p.state, {})
            by_code[p.last_error_code] = by_code.get(p.last_error_code, 0) + 1
        log: dict[str, dict[str | None, int]] = {}
        for e in self.data.push_log.get(account_id, []):
            by_code = log.setdefault(e.status, {})
            by_code[e.error_code] = by_code.get(e.error_code, 0) + 1
        return PushSummary(deliveries=counts, push_log=log)

    async def retry_failed(
        self,
        account_id: str,
        *,
        now: datetime,
        ids: Sequence[int] | None = None,
        error_code: str | None = None,
    ) -> int:
        pushes = self.data.deliveries.get(account_id, [])
        retried = 0
        for i, p in enumerate(pushes):
            if p.state != GIVEN_UP or (ids is not None and p.id not in ids):
                continue
            if error_code is not None and p.last_error_code != error_code:
                continue
            pushes[i] = replace(p, state=WAITS, failures=0, first_failed_at=None, next_attempt_at=now)
            retried += 1
        return retried

    async def dead_letters(
        self,
        account_id: str,
        *,
        after_id: int | None = None,
        limit: int = 100,
        event_ids: Sequence[str] | None = None,
    ) -> list[DeadLetterInfo]:
        rows = [
            d
            for d in self.data.dead_letters.get(account_id, [])
            if (after_id is None or d.id > after_id) and (event_ids is None or d.event_id in event_ids)
        ]
        return sorted(rows, key=lambda d: d.id)[:limit]

    async def release_for_replay(self, account_id: str, event_ids: Sequence[str]) -> list[str]:
        letters = self.data.dead_letters.get(account_id, [])
        released = [d.event_id for d in letters if d.event_id in event_ids]
        self.data.dead_letters[account_id] = [d for d in letters if d.event_id not in event_ids]
        return released


class FakeOperatorStores(FakeStores):
    def __init__(self, data: OperatorData) -> None:
        super().__init__(data)
        self.deliveries = FakeDeliveries(data)


class FakeOperatorTransactions(FakeTransactions):
    """The unit of work over `OperatorData`, its stores with the deliveries."""

    data: OperatorData

    def __init__(self, data: OperatorData | None = None) -> None:
        super().__init__(data or OperatorData())

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[FakeOperatorStores]:
        async with super().begin():
            yield FakeOperatorStores(self.data)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[FakeOperatorStores]:
        async with super().read():
            yield FakeOperatorStores(self.data)


class FakeDeadLetterTopic:
    """The dead-letter topic's events by account and event id; `reads` counts the scans."""

    def __init__(self, events: Sequence[ContactChanged] = ()) -> None:
        self.events = list(events)
        self.reads = 0

    async def originals(self, account_id: str, event_ids: Collection[str]) -> dict[str, ContactChanged]:
        self.reads += 1
        return {e.event_id: e for e in self.events if e.account_id == account_id and e.event_id in event_ids}
