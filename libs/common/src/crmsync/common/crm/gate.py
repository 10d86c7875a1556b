"""The allowance a connector spends before each CRM request (an account's share of the CRM's API limit)."""

from __future__ import annotations

from typing import Protocol


class CallGate(Protocol):
    """Held by one account's connector; shared by every connector of that account in the process."""

    async def spend(self, calls: int = 1) -> None:
        """Takes `calls` from the account's allowance before a CRM request.

        Raises CrmBudgetExhausted when crmsync's allocation for the CRM's day is used up.
        """
        ...
