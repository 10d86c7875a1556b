"""In-memory fakes of the puller's ports: a store whose transactions roll back, and a CRM.

The fake CRM names its fields as Salesforce does (its `ROLES`); its change cursor is the
ISO time of the newest change it yielded, and a change read re-reads `LOOKBACK` before it.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from crmsync.common.crm.interface import (
    ChangeBatch,
    ChangeCursorExpired,
    CrmField,
    CrmRecord,
    CrmRejected,
    DeletedRecord,
    ObjectDescribe,
)
from crmsync.common.crm.salesforce._roles import SALESFORCE_ROLES
from crmsync.common.domain.account import CrmConnectionInfo
from crmsync.common.domain.drift import RepairPlan, StoredForRepair
from crmsync.common.domain.mapping import Mapping, PushPolicy, default_salesforce_mapping
from crmsync.common.domain.pulled import MappedRecord
from crmsync.common.messages import RunSync, SyncKind, SyncReason
from crmsync.puller.domain.batches import BatchCounts, PreparedBatch, newest_per_record
from crmsync.puller.domain.deals import PulledDeal
from crmsync.puller.domain.runs import EntityAdvance, EntityState, RunCounts, RunEnd, RunProgress, SyncRun

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
LOOKBACK = timedelta(seconds=60)
ROLES = SALESFORCE_ROLES  # the fake CRM names its fields as Salesforce does
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
    deals: dict[str, PulledDeal] = field(default_factory=dict)
    full_request_cleared: bool = False
    # Full syncs the store was told of, by whether each was the first load.
    full_loads: list[bool] = field(default_factory=list)
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
        state = self._db.entities.get(entity, EntityState())
        if state.cursor is None and state.watermark is not None:
            # A state stored before change cursors: its watermark becomes the cursor (migration 0007).
            return replace(state, cursor=state.watermark.isoformat())
        return state

    async def advance_entity(self, account_id: str, entity: str, advance: EntityAdvance) -> None:
        state = self._db.entities.get(entity, EntityState())

        def later(old: datetime | None, new: datetime | None) -> datetime | None:
            return max(d for d in (old, new) if d is not None) if (old or new) else None

        self._db.entities[entity] = EntityState(
            watermark=later(state.watermark, advance.watermark),
            deleted_watermark=later(state.deleted_watermark, advance.deleted_watermark),
            last_full_at=advance.full_at or state.last_full_at,
            cursor=advance.cursor or state.cursor,
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

    async def apply_deals(self, account_id: str, deals: Sequence[PulledDeal]) -> int:
        self._store.db.deals.update({d.external_id: d for d in deals})
        return len(deals)

    async def delete_by_external_ids(self, account_id: str, entity: str, external_ids: Sequence[str]) -> int:
        contacts = self._store.db.deals if entity == "Opportunity" else self._store.db.contacts
        gone = [i for i in external_ids if i in contacts]
        for external_id in gone:
            del contacts[external_id]
        return len(gone)

    async def sweep_unseen(
        self, *, account_id: str, entity: str, run_id: uuid.UUID, started_at: datetime
    ) -> int:
        return 0

    async def full_load_finished(self, account_id: str, *, first_load: bool) -> None:
        self._store.fail("full_load_finished")
        self._store.db.full_loads.append(first_load)


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
    """A CRM connector in memory: records per entity, no deals unless given, failures on request."""

    roles = ROLES

    def __init__(self, records: dict[str, list[CrmRecord]], *, mapping: Mapping | None = None) -> None:
        self.records = records
        self.mapping = mapping or default_salesforce_mapping()
        self.deleted: dict[str, list[DeletedRecord]] = {}
        # Raised by the named call instead of answering.
        self.failures: dict[str, BaseException] = {}
        # Fields the CRM no longer has (renamed or deleted there).
        self.missing: set[str] = set()
        # Cursors the CRM no longer follows (ChangeCursorExpired).
        self.expired: set[str] = set()
        self.reads: list[tuple[str, str | None]] = []
        self.closed = False

    def _fail(self, call: str) -> None:
        if call in self.failures:
            raise self.failures[call]

    async def describe(self, object_name: str) -> ObjectDescribe:
        self._fail("describe")
        if object_name not in ("Lead", "Contact") and object_name not in self.records:
            raise CrmRejected(f"sObject type '{object_name}' is not supported", error_code="NOT_FOUND")
        if object_name == "Opportunity":
            names = set(ROLES.deal.fields)
        else:
            names = {*ROLES.person_fields(object_name), *self.mapping.source_fields(object_name)}
        names = {n.split(".")[0] for n in names} - self.missing
        return ObjectDescribe(object_name, object_name, {n: CrmField(n, n, "string") for n in names})

    def changes(
        self, object_name: str, fields: Sequence[str], cursor: str | None, *, page_size: int = 2000
    ) -> AsyncIterator[ChangeBatch]:
        self.reads.append((object_name, cursor))
        return self._changes(object_name, cursor)

    async def _changes(self, object_name: str, cursor: str | None) -> AsyncIterator[ChangeBatch]:
        self._fail("read")
        if cursor in self.expired:
            raise ChangeCursorExpired("the cursor is too old", error_code="CURSOR_EXPIRED")
        since = None if cursor is None else datetime.fromisoformat(cursor) - LOOKBACK
        records = [
            r for r in self.records.get(object_name, []) if since is None or r["SystemModstamp"] >= since
        ]
        yield ChangeBatch(records)
        deleted = [] if cursor is None else [d.id for d in self.deleted.get(object_name, [])]
        stamps = [r["SystemModstamp"] for r in records]
        newest = max(stamps, default=None) if cursor is not None else NOW
        yield ChangeBatch([], deleted, (newest or datetime.fromisoformat(cursor)).isoformat())

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
