"""Writes to the CRM: one connector per account, composite batches, one round of retries.

The connector retries transient failures (a whole request, or a record refused
with UNABLE_TO_LOCK_ROW and the like) under the shared retry policy; what is
still transient after its round is reported `retryable` and waits in Postgres
for re-delivery (R24). Permanent refusals are reported at once. An exhausted
budget is reported `parked`, never retried in a loop that would eat the
customer's API calls.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from crmsync.common.clock import utc_now
from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.factory import ConnectorFactory
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
from crmsync.common.crm.roles import RecordRoles
from crmsync.common.domain.fields import EMAIL
from crmsync.common.domain.mapping import Mapping
from crmsync.common.observability.metrics import PUSH_RESULTS
from crmsync.common.retry import RetryPolicy, is_transient, is_transient_result
from crmsync.pusher.values import Outcome, PlannedWrite

log = structlog.get_logger(__name__)


class Connectors:
    """One long-lived connector per account, rebuilt when what it is built from changes."""

    def __init__(self, factory: ConnectorFactory) -> None:
        self._factory = factory
        self._by_account: dict[str, tuple[Any, CrmConnector]] = {}
        self._retired: list[CrmConnector] = []

    def for_connection(self, connection: CrmConnectionInfo) -> CrmConnector:
        stamp = (
            connection.provider,
            connection.login_url,
            connection.auth_method,
            connection.client_id,
            connection.username,
            connection.secrets_encrypted,
            connection.api_version,
        )
        cached = self._by_account.get(connection.account_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        connector = self._factory(connection)
        self._by_account[connection.account_id] = (stamp, connector)
        return connector

    def renew(self, connection: CrmConnectionInfo) -> CrmConnector:
        """Returns a new connector for the account; the one it replaces may be in use, it is closed at the end."""
        cached = self._by_account.pop(connection.account_id, None)
        if cached is not None:
            self._retired.append(cached[1])
        return self.for_connection(connection)

    async def aclose(self) -> None:
        for connector in [c for _, c in self._by_account.values()] + self._retired:
            await connector.aclose()
        self._by_account.clear()
        self._retired.clear()


class CrmWriter:
    """One round of writes per delivery attempt, under the one retry policy (crmsync.common.retry).

    The connector retries what is transient itself (whole requests, and records
    refused for a passing reason); an error it has retried is not retried here
    again, so tries never multiply. What is still transient after that round
    comes back `retryable`, for durable re-delivery; an exhausted budget comes
    back `parked`.
    """

    def __init__(
        self, *, max_attempts: int, backoff_s: float, backoff_max_s: float, batch_size: int = 200
    ) -> None:
        self._policy = RetryPolicy(max_attempts=max_attempts, base_s=backoff_s, cap_s=backoff_max_s)
        self.batch_size = batch_size

    async def write(
        self,
        connector: CrmConnector,
        *,
        operation: str,
        crm_object: str,
        records: Sequence[CrmRecord],
        crm_ids: Sequence[str | None] = (),
        find_created: Callable[[Sequence[int]], Any] | None = None,
    ) -> list[Outcome]:
        """Returns one outcome per record, in order; `crm_ids` are the records' ids, if known.

        For creates, `find_created(indexes)` is asked before a request that
        failed as a whole is sent again (it may have been applied): it returns
        {index: record id} of records the CRM already has.
        """
        outcomes: list[Outcome | None] = [None] * len(records)
        ids = list(crm_ids) or [None] * len(records)
        todo = list(range(len(records)))
        idempotent = operation != "create"
        for attempt in range(1, self._policy.max_attempts + 1):
            if attempt > 1 and find_created is not None:
                found: dict[int, str] = await find_created(todo)
                for i, crm_id in found.items():
                    outcomes[i] = Outcome(True, crm_id, attempt - 1)
                todo = [i for i in todo if i not in found]
                if not todo:
                    break
            try:
                results = await self._send(connector, operation, crm_object, [records[i] for i in todo])
            except CrmTransientError as exc:
                log.warning("crm_write_transient", attempt=attempt, error=exc.message, code=exc.error_code)
                if is_transient(exc, idempotent=idempotent) and self._policy.can_retry(attempt):
                    await asyncio.sleep(self._policy.wait(attempt, exc))
                    continue
                return self._fill(outcomes, todo, _retryable(exc, ids, attempt))
            except CrmBudgetExhausted as exc:
                return self._fill(outcomes, todo, _parked(exc, attempt))
            except CrmRejected as exc:
                return self._fill(outcomes, todo, _failed(exc, attempt))
            for i, result in zip(todo, results, strict=True):
                outcomes[i] = _outcome(result, ids[i], attempt)
            break
        return [o for o in outcomes if o is not None]

    @staticmethod
    async def _send(
        connector: CrmConnector, operation: str, crm_object: str, batch: Sequence[CrmRecord]
    ) -> list[WriteResult]:
        if operation == "create":
            return await connector.create(crm_object, batch)
        return await connector.update(crm_object, batch)

    @staticmethod
    def _fill(
        outcomes: list[Outcome | None], todo: list[int], outcome_of: Callable[[int], Outcome]
    ) -> list[Outcome]:
        for i in todo:
            outcomes[i] = outcome_of(i)
        return [o for o in outcomes if o is not None]


def _outcome(result: WriteResult, crm_id: str | None, attempt: int) -> Outcome:
    if result.success:
        return Outcome(True, result.id or crm_id, attempt)
    error = result.errors[0] if result.errors else WriteError("UNKNOWN", "refused")
    # Still refused for a passing reason after the connector's round: it waits for re-delivery.
    return Outcome(
        False, crm_id, attempt, error.status_code, error.message, retryable=is_transient_result(result)
    )


def _retryable(
    exc: CrmTransientError, crm_ids: Sequence[str | None], attempt: int
) -> Callable[[int], Outcome]:
    return lambda i: Outcome(
        False,
        crm_ids[i],
        attempt,
        exc.error_code or "TRANSIENT",
        exc.message,
        retryable=True,
        retry_after=exc.retry_after,
    )


def _parked(exc: CrmBudgetExhausted, attempt: int) -> Callable[[int], Outcome]:
    return lambda i: Outcome(False, None, attempt, exc.error_code, exc.message, parked=True)


def _failed(exc: CrmError, attempt: int) -> Callable[[int], Outcome]:
    return lambda i: Outcome(False, None, attempt, exc.error_code or type(exc).__name__, exc.message)


def email_source(mapping: Mapping, crm_object: str) -> str | None:
    """Returns the CRM field of that object mapped to E-mail Address (R2), if any."""
    row = mapping.row(EMAIL)
    return row.source_for(crm_object) if row is not None else None


async def find_recent_by_email(
    connector: CrmConnector,
    *,
    crm_object: str,
    email_field: str | None,
    emails_lower: set[str],
    since: datetime,
    margin: timedelta,
) -> dict[str, str]:
    """Returns {lower(email): record id} of records changed since `since - margin` with these e-mails.

    Used to tell whether a create that may or may not have happened did: a
    record created by it has been modified since the create was attempted.
    `email_field` is the object's field mapped to E-mail Address; with none, nothing is found.
    """
    found: dict[str, str] = {}
    if not emails_lower:
        return found
    if email_field is None:
        log.warning("crm_create_lookup_without_email_field", crm_object=crm_object)
        return found
    id_field = connector.roles.id
    async for page in connector.changed_since(crm_object, [id_field, email_field], since - margin):
        for record in page:
            email = str(record.get(email_field) or "").lower()
            if email in emails_lower:
                found.setdefault(email, record[id_field])
    return found


class ConnectedCrm:
    """The CRM port: writes in composite batches per object and operation, reads back, finds creates."""

    def __init__(
        self, *, connectors: Connectors, writer: CrmWriter, concurrency: int, reconcile_margin: timedelta
    ) -> None:
        self._connectors = connectors
        self._writer = writer
        self._concurrency = concurrency
        self._margin = reconcile_margin

    @property
    def batch_size(self) -> int:
        return self._writer.batch_size

    async def write(
        self, connection: CrmConnectionInfo, writes: Sequence[PlannedWrite], *, mapping: Mapping
    ) -> list[Outcome]:
        """Returns one outcome per planned write, in order; `mapping` names the e-mail fields (R2)."""
        connector = self._connectors.for_connection(connection)
        size = self._writer.batch_size
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, w in enumerate(writes):
            groups[(w.operation, w.crm_object)].append(i)
        chunks = [
            (op, obj, idx[k : k + size])
            for (op, obj), idx in groups.items()
            for k in range(0, len(idx), size)
        ]
        outcomes: list[Outcome | None] = [None] * len(writes)
        gate = asyncio.Semaphore(self._concurrency)

        async def one(op: str, obj: str, idx: list[int]) -> None:
            async with gate:
                results = await self._write_chunk(connector, op, obj, [writes[i] for i in idx], mapping)
            for i, outcome in zip(idx, results, strict=True):
                outcomes[i] = outcome
            succeeded = sum(o.success for o in results)
            PUSH_RESULTS.labels("succeeded").inc(succeeded)
            PUSH_RESULTS.labels("failed").inc(len(results) - succeeded)

        await asyncio.gather(*(one(op, obj, idx) for op, obj, idx in chunks))
        return [o for o in outcomes if o is not None]

    async def _write_chunk(
        self, connector: CrmConnector, op: str, obj: str, chunk: Sequence[PlannedWrite], mapping: Mapping
    ) -> list[Outcome]:
        id_field = connector.roles.id
        records = []
        for w in chunk:
            record = dict(w.values)
            if op == "update":
                record[id_field] = w.crm_id
            records.append(record)
        started = utc_now()

        async def find_created(positions: Sequence[int]) -> dict[int, str]:
            emails = {chunk[p].email_lower: p for p in positions if chunk[p].email_lower}
            found = await find_recent_by_email(
                connector,
                crm_object=obj,
                email_field=email_source(mapping, obj),
                emails_lower=set(emails),  # type: ignore[arg-type]
                since=started,
                margin=self._margin,
            )
            return {emails[e]: crm_id for e, crm_id in found.items()}

        return await self._writer.write(
            connector,
            operation=op,
            crm_object=obj,
            records=records,
            crm_ids=[w.crm_id for w in chunk],
            find_created=find_created if op == "create" else None,
        )

    async def find_created(
        self,
        connection: CrmConnectionInfo,
        *,
        mapping: Mapping,
        crm_object: str,
        emails_lower: set[str],
        since: datetime,
    ) -> dict[str, str]:
        """Returns {lower(email): record id} of records with these e-mails changed since `since` (less the margin)."""
        return await find_recent_by_email(
            self._connectors.for_connection(connection),
            crm_object=crm_object,
            email_field=email_source(mapping, crm_object),
            emails_lower=emails_lower,
            since=since,
            margin=self._margin,
        )

    async def field_lengths(self, connection: CrmConnectionInfo, crm_object: str) -> dict[str, int]:
        """Returns the most characters each text field of the object holds (the describe is cached)."""
        described = await self._connectors.for_connection(connection).describe(crm_object)
        return {name: f.length for name, f in described.fields.items() if f.length > 0}

    async def recheck_budget(self, connection: CrmConnectionInfo) -> None:
        """Reads the API budget afresh through a new connector (it asks /limits)."""
        await self._connectors.renew(connection).budget()

    def roles(self, connection: CrmConnectionInfo) -> RecordRoles:
        """Returns which fields of the CRM's records carry the id, the modified time and the rest."""
        return self._connectors.for_connection(connection).roles

    async def read(
        self, connection: CrmConnectionInfo, *, crm_object: str, ids: Sequence[str], fields: Sequence[str]
    ) -> dict[str, CrmRecord]:
        """Returns the records with these ids that exist, by id (the id field is always read)."""
        connector = self._connectors.for_connection(connection)
        id_field = connector.roles.id
        wanted = list(dict.fromkeys([id_field, *fields]))
        return {r[id_field]: r for r in await connector.get_by_ids(crm_object, list(ids), wanted)}

    async def aclose(self) -> None:
        await self._connectors.aclose()
