"""Writes to the CRM: one connector per account, composite batches, bounded retries.

Transient failures (a CrmTransientError from the connector, or a record
refused with UNABLE_TO_LOCK_ROW and the like) are retried with exponential
backoff and full jitter, at most `push_max_attempts` times; what is still
failing after that is reported as failed with the CRM's last message.
Permanent refusals are reported at once. Budget exhaustion is reported as
failed, never retried in a loop that would eat the customer's API calls.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from crmsync.common.crm.interface import (
    CrmBudgetExhausted,
    CrmConnector,
    CrmError,
    CrmRecord,
    CrmRejected,
    CrmTransientError,
    WriteError,
    WriteResult,
)
from crmsync.common.db.schema import CrmConnection

log = structlog.get_logger(__name__)

ConnectorFactory = Callable[[CrmConnection], CrmConnector]


@dataclass(frozen=True)
class Outcome:
    """The final answer for one record: what the push log records."""

    success: bool
    crm_id: str | None
    attempts: int
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool = False  # transient, and still failing when the attempts ran out


class Connectors:
    """One long-lived connector per account, rebuilt when its connection row changes."""

    def __init__(self, factory: ConnectorFactory) -> None:
        self._factory = factory
        self._by_account: dict[str, tuple[Any, CrmConnector]] = {}

    def for_connection(self, connection: CrmConnection) -> CrmConnector:
        stamp = (connection.updated_at, connection.login_url, connection.client_id)
        cached = self._by_account.get(connection.account_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        connector = self._factory(connection)
        self._by_account[connection.account_id] = (stamp, connector)
        return connector

    async def aclose(self) -> None:
        for _, connector in self._by_account.values():
            await connector.aclose()
        self._by_account.clear()


class CrmWriter:
    def __init__(
        self, *, max_attempts: int, backoff_s: float, backoff_max_s: float, batch_size: int = 200
    ) -> None:
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self.batch_size = batch_size

    async def _sleep(self, attempt: int) -> None:
        # Full jitter: replicas that failed together do not come back together.
        await asyncio.sleep(random.uniform(0, min(self._backoff_max_s, self._backoff_s * 2 ** (attempt - 1))))

    async def write(
        self,
        connector: CrmConnector,
        *,
        operation: str,
        crm_object: str,
        records: Sequence[CrmRecord],
        find_created: Callable[[Sequence[int]], Any] | None = None,
    ) -> list[Outcome]:
        """Returns one outcome per record, in order, after bounded retries of what was transient.

        For creates, `find_created(indexes)` is asked before a retry of a
        request that failed as a whole (it may have been applied): it returns
        {index: record id} of records the CRM already has.
        """
        outcomes: list[Outcome | None] = [None] * len(records)
        todo = list(range(len(records)))
        last: dict[int, WriteError] = {}
        uncertain = False
        for attempt in range(1, self._max_attempts + 1):
            if attempt > 1:
                await self._sleep(attempt - 1)
            if uncertain and find_created is not None:
                found: dict[int, str] = await find_created(todo)
                for i, crm_id in found.items():
                    outcomes[i] = Outcome(True, crm_id, attempt - 1)
                todo = [i for i in todo if i not in found]
                if not todo:
                    break
            batch = [records[i] for i in todo]
            try:
                if operation == "create":
                    results = await connector.create(crm_object, batch)
                else:
                    results = await connector.update(crm_object, batch)
            except CrmTransientError as exc:
                uncertain = True
                log.warning("crm_write_transient", attempt=attempt, error=exc.message, code=exc.error_code)
                for i in todo:
                    last[i] = WriteError(exc.error_code or "TRANSIENT", exc.message)
                continue
            except CrmBudgetExhausted as exc:
                return self._fill(outcomes, todo, attempt, exc)
            except CrmRejected as exc:
                return self._fill(outcomes, todo, attempt, exc)
            uncertain = False
            retry = []
            for i, result in zip(todo, results, strict=True):
                if result.success:
                    outcomes[i] = Outcome(True, result.id or records[i].get("Id"), attempt)
                elif _transient(result):
                    last[i] = result.errors[0]
                    retry.append(i)
                else:
                    error = result.errors[0] if result.errors else WriteError("UNKNOWN", "refused")
                    outcomes[i] = Outcome(
                        False, records[i].get("Id"), attempt, error.status_code, error.message
                    )
            todo = retry
            if not todo:
                break
        for i in todo:
            error = last.get(i, WriteError("TRANSIENT", "retries exhausted"))
            outcomes[i] = Outcome(
                False,
                records[i].get("Id"),
                self._max_attempts,
                error.status_code,
                f"{error.message} (gave up after {self._max_attempts} attempts)",
                retryable=True,
            )
        return [o for o in outcomes if o is not None]

    @staticmethod
    def _fill(outcomes: list[Outcome | None], todo: list[int], attempt: int, exc: CrmError) -> list[Outcome]:
        for i in todo:
            outcomes[i] = Outcome(False, None, attempt, exc.error_code or type(exc).__name__, exc.message)
        return [o for o in outcomes if o is not None]


def _transient(result: WriteResult) -> bool:
    return bool(result.errors) and all(e.transient for e in result.errors)


async def find_recent_by_email(
    connector: CrmConnector,
    *,
    crm_object: str,
    emails_lower: set[str],
    since: datetime,
    margin: timedelta,
) -> dict[str, str]:
    """Returns {lower(email): record id} of records changed since `since - margin` with these e-mails.

    Used to tell whether a create that may or may not have happened did: a
    record created by it has been modified since the create was attempted.
    """
    found: dict[str, str] = {}
    if not emails_lower:
        return found
    async for page in connector.changed_since(crm_object, ["Id", "Email"], since - margin):
        for record in page:
            email = (record.get("Email") or "").lower()
            if email in emails_lower:
                found.setdefault(email, record["Id"])
    return found
