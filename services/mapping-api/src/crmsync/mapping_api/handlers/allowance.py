"""The account's API allowance: crmsync's part of the CRM's daily limit, and what it took today (R26).

The allocation is a share of the daily limit or a number of calls, never both;
pulls, pushes and their retries all take from it, in every service.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.domain.allowance import ApiAllocation, crm_day
from crmsync.mapping_api.handlers.errors import Invalid, NoConnection


class AllowanceStore(Protocol):
    async def connection(self, account_id: str) -> CrmConnectionInfo | None: ...

    async def used(self, account_id: str, day: date) -> int:
        """Returns the calls crmsync took from the account's allowance that CRM day."""
        ...

    async def set_allocation(
        self, account_id: str, allocation: ApiAllocation, *, updated_at: datetime
    ) -> None:
        """Stores the allocation on the account's connection (which exists)."""
        ...


class AllowanceTransactions(Protocol):
    """`begin()` commits when the block ends without an error, `read()` never does."""

    def begin(self) -> AbstractAsyncContextManager[AllowanceStore]: ...

    def read(self) -> AbstractAsyncContextManager[AllowanceStore]: ...


@dataclass(frozen=True)
class AllowanceView:
    allocation: ApiAllocation
    api_limit: int | None
    api_limit_checked_at: datetime | None
    day: date
    used: int

    @property
    def allocated_calls(self) -> int | None:
        return self.allocation.calls_for(self.api_limit)

    @property
    def remaining(self) -> int | None:
        allocated = self.allocated_calls
        return None if allocated is None else max(0, allocated - self.used)


async def _view(store: AllowanceStore, *, account_id: str, now: datetime) -> AllowanceView:
    connection = await store.connection(account_id)
    if connection is None:
        raise NoConnection()
    day = crm_day(now)
    return AllowanceView(
        allocation=ApiAllocation(
            share=connection.api_allocation_share, calls=connection.api_allocation_calls
        ),
        api_limit=connection.api_limit,
        api_limit_checked_at=connection.last_checked_at,
        day=day,
        used=await store.used(account_id, day),
    )


async def get_allowance(tx: AllowanceTransactions, *, account_id: str, now: datetime) -> AllowanceView:
    """Returns the allocation, the CRM's daily limit as last seen, and today's calls."""
    async with tx.read() as store:
        return await _view(store, account_id=account_id, now=now)


def checked_allocation(*, share: float | None, calls: int | None) -> ApiAllocation:
    """Returns the allocation; refuses both forms at once or a value out of range, naming the field."""
    if share is not None and calls is not None:
        raise Invalid("give the allocation as a share or as a number of calls, not both", field="calls")
    try:
        return ApiAllocation(share=share, calls=calls)
    except ValueError as exc:
        raise Invalid(str(exc), field="share" if share is not None else "calls") from exc


async def set_allowance(
    tx: AllowanceTransactions, *, account_id: str, share: float | None, calls: int | None, now: datetime
) -> AllowanceView:
    """Stores the allocation (neither form: none holds) and returns the allowance as `get_allowance` does."""
    allocation = checked_allocation(share=share, calls=calls)
    async with tx.begin() as store:
        if await store.connection(account_id) is None:
            raise NoConnection()
        await store.set_allocation(account_id, allocation, updated_at=now)
        return await _view(store, account_id=account_id, now=now)
