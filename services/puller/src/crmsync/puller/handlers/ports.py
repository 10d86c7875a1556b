"""What the puller's use cases need from the world, as protocols the adapters implement.

The database side is reached through a store that opens transactions: all a
step writes (a batch of contacts, the run's counts and resume point, the
change cursor that covers them) commits together or not at all (R18). A
database that cannot be reached raises `StoreUnavailable`; the CRM is reached
through a connector built by a `ConnectorFactory`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from crmsync.common.crm.factory import ConnectorFactory
from crmsync.common.domain.account import CrmConnectionInfo
from crmsync.common.domain.drift import RepairPlan, StoredForRepair
from crmsync.common.domain.mapping import Mapping, PushPolicy
from crmsync.common.domain.pulled import MappedRecord
from crmsync.common.messages import RunSync
from crmsync.puller.domain.batches import BatchCounts, PreparedBatch
from crmsync.puller.domain.deals import PulledDeal
from crmsync.puller.domain.lanes import Lane, LaneBacklog, WaitingAccount
from crmsync.puller.domain.runs import EntityAdvance, EntityState, RunCounts, RunEnd, RunProgress, SyncRun

__all__ = [
    "AccountLock",
    "ConnectorFactory",
    "ContactRepository",
    "JobStore",
    "RepairRepository",
    "RunQueue",
    "RunRepository",
    "SyncStore",
    "SyncTransaction",
]


class RunRepository(Protocol):
    """Sync runs, sync state and configuration, inside the caller's transaction."""

    async def covering_run(self, run: SyncRun) -> uuid.UUID | None:
        """Returns a run that succeeded after this one was requested and covers it, if any."""
        ...

    async def mapping(self, account_id: str) -> Mapping:
        """Returns the account's current mapping (the default one when none was saved, R7)."""
        ...

    async def connection(self, account_id: str) -> CrmConnectionInfo | None:
        """Returns the account's CRM connection, if one was made."""
        ...

    async def policy(self, account_id: str) -> PushPolicy:
        """Returns the account's push policy (R8)."""
        ...

    async def last_repair_at(self, account_id: str) -> datetime | None:
        """Returns when the account's last drift repair pass began, if one ran (R25)."""
        ...

    async def add_drift_found(self, run_id: uuid.UUID, found: int) -> None:
        """Adds to what the run's repair pass handed to the pusher (R25)."""
        ...

    async def entity_state(self, account_id: str, entity: str) -> EntityState: ...

    async def advance_entity(self, account_id: str, entity: str, advance: EntityAdvance) -> None:
        """Moves the entity's watermarks forward, never back (R18)."""
        ...

    async def add_progress(
        self, run_id: uuid.UUID, counts: RunCounts, progress: RunProgress | None = None
    ) -> None:
        """Adds to the run's counts and, when given, replaces its resume point."""
        ...

    async def finish_run(self, run_id: uuid.UUID, end: RunEnd) -> None:
        """Records how the run ended or stopped for now."""
        ...

    async def clear_full_request(self, account_id: str, started_at: datetime) -> None:
        """Clears the new-field request a successful full sync has served (R15)."""
        ...


class ContactRepository(Protocol):
    """The contact store, inside the caller's transaction."""

    async def has_contacts(self, account_id: str) -> bool: ...

    async def apply_records(
        self, *, account_id: str, run_id: uuid.UUID, batch: PreparedBatch, full: bool
    ) -> BatchCounts:
        """Merges a batch of CRM records into the store; returns what changed."""
        ...

    async def apply_deals(self, account_id: str, deals: Sequence[PulledDeal]) -> int:
        """Stores the deals, linked to their company and contact (R5); returns how many."""
        ...

    async def delete_by_external_ids(self, account_id: str, entity: str, external_ids: Sequence[str]) -> int:
        """Removes what the CRM deleted (R16): contacts of a person kind, or deals; returns how many."""
        ...

    async def sweep_unseen(
        self, *, account_id: str, entity: str, run_id: uuid.UUID, started_at: datetime
    ) -> int:
        """Removes the entity's contacts the full sync did not see (R16); returns how many."""
        ...

    async def full_load_finished(self, account_id: str, *, first_load: bool) -> None:
        """Tells the store a full sync of the account has read everything, in the transaction that
        records the run's success; `first_load`: the store had no contact when that sync began."""
        ...


class RepairRepository(Protocol):
    """Drift repair (R25) inside the caller's transaction."""

    async def candidates(
        self, account_id: str, *, after: uuid.UUID | None, limit: int
    ) -> list[StoredForRepair]:
        """Returns the next contacts (by id) with a local value newer than the CRM version last pulled,
        whose pushes are not in flight."""
        ...

    async def apply(self, account_id: str, plans: Sequence[RepairPlan], *, now: datetime) -> int:
        """Hands the repairs to the pusher (fields found changed meanwhile, or events it logged, stay);
        returns how many fields went."""
        ...


class SyncTransaction(Protocol):
    runs: RunRepository
    contacts: ContactRepository
    repairs: RepairRepository


class SyncStore(Protocol):
    """Opens the transactions a sync writes in."""

    def begin(self) -> AbstractAsyncContextManager[SyncTransaction]:
        """A transaction that commits when the block ends without an error."""
        ...

    def read(self) -> AbstractAsyncContextManager[SyncTransaction]:
        """Reads only; nothing is committed."""
        ...

    def prepare(self, records: Sequence[MappedRecord], *, empty_store: bool) -> PreparedBatch:
        """Makes a batch ready for `apply_records` (CPU only: safe in a thread)."""
        ...


class JobStore(Protocol):
    async def record_jobs(self, jobs: Sequence[RunSync]) -> list[bool]:
        """Queues the jobs as sync runs in one transaction; returns, per job, whether it was new (R18)."""
        ...


class RunQueue(Protocol):
    """Where workers find their runs."""

    async def waiting_accounts(self, limit: int) -> list[WaitingAccount]:
        """Returns accounts whose oldest open run can start now, up to `limit` per lane, oldest first."""
        ...

    async def claim_next_run(self, account_id: str, lanes: frozenset[Lane]) -> SyncRun | None:
        """Marks the account's oldest run as running and returns it, if it is due and in one of `lanes`
        (the caller holds the account's lock)."""
        ...

    async def backlog(self) -> list[LaneBacklog]:
        """Returns, per lane, the runs that could start now and wait for a worker (R26)."""
        ...


class AccountLock(Protocol):
    """Keeps one account's runs one at a time across replicas; dies with the process."""

    async def try_acquire(self) -> bool: ...

    async def release(self) -> None: ...
