"""What the scheduler's use cases and loop need from the outside world, as Protocols.

The adapters implement them; values in `crmsync.scheduler.values` cross them.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime
from typing import Protocol, TypeVar

from pydantic import BaseModel

from crmsync.scheduler.values import AccountSchedule, JobRecord, NextLook

Store_co = TypeVar("Store_co", covariant=True)


class Transactions(Protocol[Store_co]):
    """Opens one transaction per block, committed when the block ends without an error."""

    def begin(self) -> AbstractAsyncContextManager[Store_co]: ...


class JobStore(Protocol):
    """What emitting due jobs reads and writes, all in one transaction."""

    async def due_accounts(self, *, now: datetime, limit: int) -> list[AccountSchedule]:
        """Returns up to `limit` connected accounts due to be looked at by `now`, soonest first."""
        ...

    async def set_next_looks(self, looks: Sequence[NextLook]) -> None:
        """Sets when each account is looked at next, unless it changed since it was read."""
        ...

    async def record_new_jobs(self, jobs: Sequence[JobRecord]) -> set[tuple[str, str]]:
        """Records the jobs not recorded yet; returns the (account_id, job_id) of those."""
        ...

    def enqueue(self, *, account_id: str, topic: str, key: str, message: BaseModel) -> None:
        """Queues a message to be published once the transaction has committed."""
        ...


class HistoryStore(Protocol):
    """Deletes one bounded batch of expired history; each returns how many rows it deleted."""

    async def delete_outbox(self, *, published_before: datetime, limit: int) -> int: ...

    async def delete_sync_runs(self, *, finished_before: datetime, limit: int) -> int: ...

    async def delete_stale_sightings(self, *, limit: int) -> int: ...

    async def delete_scheduled_jobs(self, *, slot_before: datetime, limit: int) -> int: ...

    async def delete_push_log(self, *, created_before: datetime, limit: int) -> int: ...

    async def delete_api_usage(self, *, day_before: date, limit: int) -> int: ...


class Leader(Protocol):
    """The election of the one replica that emits."""

    async def ensure(self) -> bool:
        """Returns whether this replica leads, taking the lead when it is free."""
        ...

    async def release(self) -> None: ...


class Outbox(Protocol):
    """Publishes what committed transactions queued."""

    async def publish_pending(self) -> int:
        """Publishes up to one batch; returns how many messages."""
        ...
