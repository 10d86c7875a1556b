"""The org's daily API budget: read from each answer, kept above the reserve for other tools."""

from __future__ import annotations

import asyncio
import re

import httpx
import structlog

from crmsync.common.crm.interface import CrmBudgetExhausted
from crmsync.common.crm.salesforce._config import ConnectorOptions
from crmsync.common.observability.metrics import CRM_API_BUDGET_LEFT

log = structlog.get_logger(__name__)

_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")


class ApiUsage:
    """The day's calls used and allowed, as Salesforce last reported them (None until it has)."""

    def __init__(self, options: ConnectorOptions, *, account: str) -> None:
        self._options = options
        self._account = account
        self.used: int | None = None
        self.limit: int | None = None

    def count_call(self) -> None:
        if self.used is not None:
            self.used += 1  # pessimistic until the next Sforce-Limit-Info corrects it

    def read(self, response: httpx.Response) -> None:
        """Takes the usage an answer's Sforce-Limit-Info header reports."""
        header = response.headers.get("Sforce-Limit-Info")
        if header:
            match = _LIMIT_INFO.search(header)
            if match:
                self.record(used=int(match.group(1)), limit=int(match.group(2)))

    def record(self, *, used: int, limit: int) -> None:
        self.used, self.limit = used, limit
        CRM_API_BUDGET_LEFT.labels(self._account).set(max(0, limit - used))

    async def pace(self) -> None:
        """Slows calls down as the budget nears the reserve; refuses to eat into the reserve."""
        if self.limit is None or self.used is None:
            return
        opts = self._options
        reserve = opts.reserve_for(self.limit)
        left = self.limit - reserve - self.used
        if left <= 0:
            raise CrmBudgetExhausted(
                f"API budget down to the reserve of {reserve} calls kept for other tools "
                f"({self.used}/{self.limit} used)",
                used=self.used,
                limit=self.limit,
            )
        window = self.limit * opts.budget_slowdown_fraction
        if left < window:
            delay = opts.budget_slowdown_max_delay_s * (1 - left / window)
            log.info("crm.budget.slowdown", left=left, delay_s=round(delay, 3))
            await asyncio.sleep(delay)
