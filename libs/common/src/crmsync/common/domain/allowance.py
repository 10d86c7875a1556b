"""An account's API allocation: the calls crmsync may make on one CRM day (pure).

The customer gives crmsync a part of the CRM's daily API limit, as a share of
it or as a number of calls, never both. Pulls, pushes and their retries all
spend from it; scheduled syncs pick their interval to fit it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime

# Share of the allocation scheduled syncs plan for; pushes and Sync Now spend the rest.
SCHEDULED_SHARE_OF_ALLOCATION = 0.5


@dataclass(frozen=True)
class ApiAllocation:
    """What the account gave crmsync: a share of the daily limit, a number of calls, or neither."""

    share: float | None = None
    calls: int | None = None

    def __post_init__(self) -> None:
        if self.share is not None and self.calls is not None:
            raise ValueError("an allocation is a share of the daily limit or a number of calls, not both")
        if self.share is not None and not (isinstance(self.share, int | float) and 0 < self.share <= 1):
            raise ValueError("share: must be more than 0 and at most 1 (1 is the whole daily limit)")
        if self.calls is not None and (isinstance(self.calls, bool) or not isinstance(self.calls, int)):
            raise ValueError("calls: must be a whole number of calls")
        if self.calls is not None and self.calls <= 0:
            raise ValueError("calls: must be at least 1")

    @property
    def is_set(self) -> bool:
        return self.share is not None or self.calls is not None

    def calls_for(self, api_limit: int | None) -> int | None:
        """Returns the calls crmsync may make today under a daily limit of `api_limit`."""
        return allocated_calls(api_limit, self.share, self.calls)


def allocated_calls(api_limit: int | None, share: float | None, calls: int | None) -> int | None:
    """Returns the calls a day crmsync may make, None when nothing holds it to a number.

    A number of calls stands as given, but never above a known limit (the CRM
    refuses the rest anyway). A share needs the limit: until the CRM has
    reported one, it gives no number.
    """
    allocation = ApiAllocation(share=share, calls=calls)
    limit = None if api_limit is None else max(0, api_limit)
    if allocation.calls is not None:
        return allocation.calls if limit is None else min(allocation.calls, limit)
    if allocation.share is None or limit is None:
        return None
    # Rounded down, with a little slack for the float product (0.29 * 100 is 28.999…).
    return min(limit, math.floor(allocation.share * limit + 1e-9))


def crm_day(moment: datetime) -> date:
    """Returns the CRM day a moment falls on: the UTC date (a naive moment is read as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date()
