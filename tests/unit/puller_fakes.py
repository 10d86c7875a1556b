"""In-memory fakes of the puller's ports: a store whose transactions roll back, and a CRM."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crmsync.common.crm.interface import CrmField, CrmRecord, CrmRejected, DeletedRecord, ObjectDescribe
from crmsync.common.domain.account import CrmConnectionInfo
from crmsync.common.domain.drift import RepairPlan, StoredForRepair
from crmsync.common.domain.mapping import Mapping, PushPolicy, default_salesforce_mapping
from crmsync.common.domain.pulled import MappedRecord
from crmsync.common.messages import RunSync, SyncKind, SyncReason
from crmsync.puller.domain.batches import BatchCounts, PreparedBatch, newest_per_record
from crmsync.puller.domain.runs import EntityAdvance, EntityState, RunCounts, RunEnd, RunProgress, SyncRun
from crmsync.puller.handlers.crm_records import BASE_FIELDS, CONVERSION_FIELDS

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
ACCOUNT = "acme"
CONNECTION = CrmConnectionInfo(
    account_id=ACCOUNT,
    provider="salesforce",
    login_url="https://login.example.com",
    auth_method="client_credentials",
    client_id="client",
    secrets_encrypted=b"",
)


def claimed(
    kind: SyncKind = SyncKind.FULL, *, attempts: int = 1, progress: RunProgress | None = None
) -> SyncRun:
    """Returns a run as a worker claims it."""
    return SyncRun(
        id=uuid.uuid4(),
        account_id=ACCOUNT,
        job_id=f"{ACCOUNT}:{kind}:1",
        kind=kind,
        reason=SyncReason.SYNC_NOW,
        status="running",
        attempts=attempts,
        progress=progress or RunProgress(),
        requested_at=NOW,
        started_at=NOW,
    )


@dataclass
class RunRecord:
    """What the store knows of one run."""

    end: RunEnd | None = None
    progress: RunProgress = field(default_factory=RunProgress)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Db:
    mapping: Mapping = field(default_factory=default_salesforce_mapping)
    connection: CrmConnectionInfo | None = CONNECTION
    runs: dict[uuid.UUID, RunRecord] = field(default_factory=dict)
    # A run that succeeded after the one executed was asked for, and covers it.
    covering: uuid.UUID | None = None
    entities: dict[str, EntityState] = field(default_factory=dict)
    contacts: dict[str, MappedRecord] = field(default_factory=dict)
    full_request_cleared: bool = False
    policy: PushPolicy = field(default_factory=PushPolicy)
    # Drift repair (R25): contacts to repair, the plans handed over, passes run (run id -> fields).
    repair_candidates: list[StoredForRepair] = field(default_factory=list)
    repaired: list[RepairPlan] = field(default_factory=list)
    drift_found: dict[uuid.UUID, int] = field(default_factory=dict)
    last_repair_at: datetime | None = None


class FakeRuns:
    def __init__(self, store: FakeStore) -> None:
        self._store = store

    @property
    def _db(self) -> Db:
        return self._store.db

    async def covering_run(self, run: SyncRun) -> uuid.UUID | None:
        return self._db.covering

    async def mapping(self, account_id: str) -> Mapping:
        return self._db.mapping

    async def connection(self, account_id: str) -> CrmConnectionInfo | None:
        return self._db.connection

    async def policy(self, account_id: str) -> PushPolicy:
        return self._db.policy

    async def last_repair_at(self, account_id: str) -> datetime | None:
        return self._db.last_repair_at

    async def add_drift_found(self, run_id: uuid.UUID, found: int) -> None:
        self._db.drift_found[run_id] = self._db.drift_found.get(run_id, 0) + found

    async def entity_state(self, account_id: str, entity: str) -> EntityState:
        return self._db.entities.get(entity, EntityState())

    async def advance_entity(self, account_id: str, entity: str, advance: EntityAdvance) -> None:
        state = self._db.entities.get(entity, EntityState())

        def later(old: datetime | None, new: datetime | None) -> datetime | None:
            return max(d for d in (old, new) if d is not None) if (old or new) else None

        self._db.entities[entity] = EntityState(
            watermark=later(state.watermark, advance.watermark),
            deleted_watermark=later(state.deleted_watermark, advance.deleted_watermark),
            last_full_at=advance.full_at or state.last_full_at,
        )

    def _run(self, run_id: uuid.UUID) -> RunRecord:
        return self._db.runs.setdefault(run_id, RunRecord())

    async def add_progress(
        self, run_id: uuid.UUID, counts: RunCounts, progress: RunProgress | None = None
    ) -> None:
        record = self._run(run_id)
        for name, value in vars(counts).items():
            record.counts[name] = record.counts.get(name, 0) + value
        if progress is not None:
            record.progress = progress

    async def finish_run(self, run_id: uuid.UUID, end: RunEnd) -> None:
        self._store.fail("finish_run")
        record = self._run(run_id)
        record.end = end
        if end.progress is not None:
            record.progress = end.progress

    async def clear_full_request(self, account_id: str, started_at: datetime) -> None:
        self._db.full_request_cleared = True


class FakeContacts:
    def __init__(self, store: FakeStore) -> None:
        self._store = store

    async def has_contacts(self, account_id: str) -> bool:
        return bool(self._store.db.contacts)

    async def apply_records(
        self, *, account_id: str, run_id: uuid.UUID, batch: PreparedBatch, full: bool
    ) -> BatchCounts:
        self._store.fail("apply_records")
        contacts = self._store.db.contacts
        created = sum(1 for r in batch.records if r.external_id not in contacts)
        contacts.update({r.external_id: r for r in batch.records})
        return BatchCounts(created=created, updated=len(batch.records) - created)

    async def apply_opportunities(self, account_id: str, records: Sequence[dict[str, Any]]) -> int:
        return len(records)

    async def delete_by_external_ids(self, account_id: str, entity: str, external_ids: Sequence[str]) -> int:
        contacts = self._store.db.contacts
        gone = [i for i in external_ids if i in contacts]
        for external_id in gone:
            del contacts[external_id]
        return len(gone)

    async def sweep_unseen(
        self, *, account_id: str, entity: str, run_id: uuid.UUID, started_at: datetime
    ) -> int:
        return 0


class FakeRepairs:
    def __init__(self, store: FakeStore) -> None:
        self._store = store

    async def candidates(
        self, account_id: str, *, after: uuid.UUID | None, limit: int
    ) -> list[StoredForRepair]:
        found = sorted(self._store.db.repair_candidates, key=lambda c: c.id)
        return [c for c in found if after is None or c.id > after][:limit]

    async def apply(self, account_id: str, plans: Sequence[RepairPlan], *, now: datetime) -> int:
        self._store.db.repaired.extend(plans)
        return sum(p.found for p in plans)


class FakeTransaction:
    def __init__(self, store: FakeStore) -> None:
        self.runs = FakeRuns(store)
        self.contacts = FakeContacts(store)
        self.repairs = FakeRepairs(store)


class FakeStore:
    """The `SyncStore` port in memory: a transaction that fails leaves the state as it was."""

    def __init__(self, db: Db | None = None) -> None:
        self.db = db or Db()
        # Raised by the named call (once), as a store that lost its database would.
        self.failures: dict[str, BaseException] = {}

    def fail(self, call: str) -> None:
        failure = self.failures.pop(call, None)
        if failure is not None:
            raise failure

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[FakeTransaction]:
        before = copy.deepcopy(self.db)
        try:
            yield FakeTransaction(self)
        except BaseException:
            self.db = before
            raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[FakeTransaction]:
        yield FakeTransaction(self)

    def prepare(self, records: Sequence[MappedRecord], *, empty_store: bool) -> PreparedBatch:
        conversions, todo = newest_per_record(records)
        return PreparedBatch(conversions, todo)

    def run(self, run: SyncRun) -> RunRecord:
        return self.db.runs.get(run.id, RunRecord())


def lead(n: int, *, modstamp: datetime = NOW) -> CrmRecord:
    return {"Id": f"00Q{n:03d}", "SystemModstamp": modstamp, "Email": f"lead{n}@example.com", "LastName": "L"}


def contact(n: int, *, modstamp: datetime = NOW) -> CrmRecord:
    return {"Id": f"003{n:03d}", "SystemModstamp": modstamp, "Email": f"c{n}@example.com", "LastName": "C"}


class FakeCrm:
    """A CRM connector in memory: records per entity, no opportunities, failures on request."""

    def __init__(self, records: dict[str, list[CrmRecord]], *, mapping: Mapping | None = None) -> None:
        self.records = records
        self.mapping = mapping or default_salesforce_mapping()
        self.deleted: dict[str, list[DeletedRecord]] = {}
        # Raised by the named call instead of answering.
        self.failures: dict[str, BaseException] = {}
        # Fields the CRM no longer has (renamed or deleted there).
        self.missing: set[str] = set()
        self.closed = False

    def _fail(self, call: str) -> None:
        if call in self.failures:
            raise self.failures[call]

    async def describe(self, object_name: str) -> ObjectDescribe:
        self._fail("describe")
        if object_name not in ("Lead", "Contact"):
            raise CrmRejected(f"sObject type '{object_name}' is not supported", error_code="NOT_FOUND")
        names = {*BASE_FIELDS[object_name], *self.mapping.source_fields(object_name)}
        if object_name == "Lead":
            names |= set(CONVERSION_FIELDS)
        names = {n.split(".")[0] for n in names} - self.missing
        return ObjectDescribe(object_name, object_name, {n: CrmField(n, n, "string") for n in names})

    async def _pages(self, object_name: str, since: datetime | None) -> AsyncIterator[list[CrmRecord]]:
        self._fail("read")
        yield [r for r in self.records.get(object_name, []) if since is None or r["SystemModstamp"] >= since]

    def export_all(self, object_name: str, fields: Sequence[str]) -> AsyncIterator[list[CrmRecord]]:
        return self._pages(object_name, None)

    def changed_since(
        self, object_name: str, fields: Sequence[str], since: datetime, *, page_size: int = 2000
    ) -> AsyncIterator[list[CrmRecord]]:
        return self._pages(object_name, since)

    async def deleted_since(self, object_name: str, start: datetime, end: datetime) -> list[DeletedRecord]:
        self._fail("deleted")
        return self.deleted.get(object_name, [])

    async def get_by_ids(
        self, object_name: str, ids: Sequence[str], fields: Sequence[str]
    ) -> list[CrmRecord]:
        self._fail("get_by_ids")
        wanted = set(ids)
        return [r for r in self.records.get(object_name, []) if r["Id"] in wanted]

    async def aclose(self) -> None:
        self.closed = True


class FakeJobs:
    """The `JobStore` port in memory."""

    def __init__(self) -> None:
        self.known: set[tuple[str, str]] = set()

    async def record_jobs(self, jobs: Sequence[RunSync]) -> list[bool]:
        new = []
        for job in jobs:
            key = (job.account_id, job.job_id)
            new.append(key not in self.known)
            self.known.add(key)
        return new
