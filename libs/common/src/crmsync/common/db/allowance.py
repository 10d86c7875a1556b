"""An account's API allowance, shared by every process of every service through PostgreSQL.

Each call a connector makes is taken from `crm_api_usage`, the account's row
for the CRM day (UTC). A gate takes calls in leases (`lease_calls` at a time)
with one atomic upsert that grants the whole lease or nothing, so the row
never passes the allocation however many processes race, and a request is
not a database round trip. A lease is at most a tenth of what the allocation
has left, so near its end a gate takes just the calls it needs.

Unused calls of a lease go back to the row when the gate is closed (`aclose`);
a process that ends without closing leaves them counted as used for that day
(at most `lease_calls - 1` per account and process). Leases of a past day lapse.

The allocation is read with every lease, so a change made in the API holds
from the next lease on. An account with no allocation is counted all the same
(the API shows crmsync's calls of the day) and never refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeVar

import asyncpg
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.clock import utc_now
from crmsync.common.crm.interface import CrmBudgetExhausted, CrmTransientError
from crmsync.common.db.schema import CrmApiUsage, CrmConnection
from crmsync.common.db.unit_of_work import UnitOfWork
from crmsync.common.domain.account import CrmConnectionInfo
from crmsync.common.domain.allowance import allocated_calls, crm_day

LEASE_CALLS = 20
# A lease is at most this part of what the allocation has left (as last seen), so gates idle in
# other processes hold back little of a small allocation.
LEASE_SPREAD = 10

T = TypeVar("T")

# Failures of the database the gate cannot tell from a passing outage: the request waits and is retried.
_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    DBAPIError,
    PoolTimeout,
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
)

# Grants `want` calls or nothing: inserts the day's row, or adds to it while it stays within `allowed`.
_TAKE = text(
    """
    insert into crm_api_usage as u (account_id, day, calls)
    select cast(:account_id as text), cast(:day as date), cast(:want as integer)
    where cast(:allowed as integer) is null or cast(:want as integer) <= cast(:allowed as integer)
    on conflict (account_id, day) do update
        set calls = u.calls + excluded.calls, updated_at = now()
        where cast(:allowed as integer) is null or u.calls + excluded.calls <= cast(:allowed as integer)
    returning u.calls
    """
)

_GIVE_BACK = text(
    """
    update crm_api_usage set calls = greatest(0, calls - :unused), updated_at = now()
    where account_id = :account_id and day = :day
    """
)


@dataclass(frozen=True)
class Allowance:
    """An account's allowance of one CRM day, as the API shows it."""

    day: date
    used: int
    api_limit: int | None
    allocated: int | None

    @property
    def remaining(self) -> int | None:
        return None if self.allocated is None else max(0, self.allocated - self.used)


async def calls_used(session: AsyncSession, *, account_id: str, day: date) -> int:
    """Returns the calls crmsync took from the account's allowance that day (leases in use included)."""
    used = await session.scalar(
        select(CrmApiUsage.calls).where(CrmApiUsage.account_id == account_id, CrmApiUsage.day == day)
    )
    return int(used or 0)


async def _allocated(session: AsyncSession, account_id: str) -> int | None:
    row = (
        await session.execute(
            select(
                CrmConnection.api_limit,
                CrmConnection.api_allocation_share,
                CrmConnection.api_allocation_calls,
            ).where(CrmConnection.account_id == account_id)
        )
    ).one_or_none()
    return None if row is None else allocated_calls(*row)


class PgCallGate:
    """One account's allowance in this process, spent by all its connectors (a CallGate)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        account_id: str,
        lease_calls: int = LEASE_CALLS,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if lease_calls < 1:
            raise ValueError("lease_calls must be at least 1")
        self._uow = UnitOfWork(sessions)
        self._account_id = account_id
        self._lease_calls = lease_calls
        self._clock = clock
        self._lock = asyncio.Lock()
        self._day: date | None = None
        self._held = 0
        self._seen_used = 0  # the day's calls taken by every gate, as the last lease saw them

    @property
    def held(self) -> int:
        """Calls leased and not spent yet."""
        return self._held

    async def spend(self, calls: int = 1) -> None:
        """Takes `calls` before a CRM request; raises CrmBudgetExhausted when the allocation is spent."""
        if calls < 1:
            return
        async with self._lock:
            today = crm_day(self._clock())
            if self._day != today:
                self._day, self._held, self._seen_used = today, 0, 0  # a past day's lease lapses
            if self._held < calls:
                await self._lease(today, calls - self._held)
            self._held -= calls

    async def aclose(self) -> None:
        """Gives the unused calls of the current lease back to the day's allowance."""
        async with self._lock:
            if self._day is None or self._held == 0:
                return
            unused, self._held = self._held, 0
            await self._guarded(self._give_back(self._day, unused))

    async def _lease(self, day: date, needed: int) -> None:
        taken, used, allowed = await self._guarded(self._take(day, needed))
        if not taken:
            raise CrmBudgetExhausted(
                f"crmsync's API allocation for {day:%Y-%m-%d} (UTC) is spent: {used} of {allowed} calls",
                used=used,
                limit=allowed or 0,
            )
        self._held += taken

    async def _take(self, day: date, needed: int) -> tuple[int, int, int | None]:
        """Returns (calls granted, calls used that day, calls allocated)."""
        async with self._uow.begin() as session:
            allowed = await _allocated(session, self._account_id)
            for want in dict.fromkeys((max(self._lease_size(allowed), needed), needed)):
                params = {"account_id": self._account_id, "day": day, "want": want, "allowed": allowed}
                used = await session.scalar(_TAKE, params)
                if used is not None:
                    self._seen_used = int(used)
                    return want, self._seen_used, allowed
            self._seen_used = await calls_used(session, account_id=self._account_id, day=day)
            return 0, self._seen_used, allowed

    def _lease_size(self, allowed: int | None) -> int:
        if allowed is None:
            return self._lease_calls
        return min(self._lease_calls, max(1, (allowed - self._seen_used) // LEASE_SPREAD))

    async def _give_back(self, day: date, unused: int) -> None:
        async with self._uow.begin() as session:
            await session.execute(_GIVE_BACK, {"account_id": self._account_id, "day": day, "unused": unused})

    @staticmethod
    async def _guarded(work: Awaitable[T]) -> T:
        try:
            return await work
        except _DATABASE_ERRORS as exc:
            error = CrmTransientError(f"the API allowance could not be read: {type(exc).__name__}: {exc}")
            error.maybe_applied = False  # the CRM request was not sent
            raise error from exc


class CallGateRegistry:
    """The gates of this process, one per account: `registry(connection)` is the account's gate.

    Pass it as a connector factory's `call_gates`; `aclose()` at shutdown gives unused leases back.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, lease_calls: int = LEASE_CALLS) -> None:
        self._sessions = sessions
        self._lease_calls = lease_calls
        self._gates: dict[str, PgCallGate] = {}

    def __call__(self, connection: CrmConnectionInfo) -> PgCallGate:
        gate = self._gates.get(connection.account_id)
        if gate is None:
            gate = PgCallGate(self._sessions, account_id=connection.account_id, lease_calls=self._lease_calls)
            self._gates[connection.account_id] = gate
        return gate

    async def aclose(self) -> None:
        for gate in list(self._gates.values()):
            await gate.aclose()


def call_gates_for(sessions: async_sessionmaker[AsyncSession]) -> CallGateRegistry:
    """Returns the per-account gates a service's connector factory takes (`call_gates=`)."""
    return CallGateRegistry(sessions)
