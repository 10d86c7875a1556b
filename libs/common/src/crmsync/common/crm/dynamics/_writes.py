"""Creates and updates through `$batch`, up to 1,000 operations a call, one result per record.

An update is a PATCH with `If-Match: *`, so a record gone from Dataverse is
refused rather than created again (creation only through `create`, R9).
Nothing here deletes (R10).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

import structlog

from crmsync.common.crm.dynamics import _batch as batch
from crmsync.common.crm.dynamics._entities import Entity
from crmsync.common.crm.dynamics._errors import (
    TRANSIENT_WRITE_CODE,
    dataverse_error,
    fields_named,
    is_transient_status,
    retry_after,
)
from crmsync.common.crm.dynamics._metadata import Describes
from crmsync.common.crm.dynamics._records import outgoing
from crmsync.common.crm.dynamics._transport import Transport
from crmsync.common.crm.interface import CrmRecord, CrmRejected, CrmTransientError, WriteError, WriteResult
from crmsync.common.retry import is_transient_result

log = structlog.get_logger(__name__)

_ENTITY_ID = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")
NOT_PROCESSED = batch.Answer(
    503, {}, b'{"error": {"code": "NOT_PROCESSED", "message": "not run: the batch stopped"}}'
)


def _result(answer: batch.Answer, *, record_id: str | None, creating: bool) -> WriteResult:
    """Returns one operation's answer as the interface's write result."""
    if answer.status < 300:
        found = _ENTITY_ID.search(answer.headers.get("odata-entityid", ""))
        return WriteResult(id=found[1].lower() if found else record_id, success=True)
    code, message = dataverse_error(answer.body, answer.status)
    # Refused before any work (throttled, unavailable, not run) is worth sending again; a create
    # answered with a 500 may have been applied, so it is not.
    passing = is_transient_status(answer.status, code) and (
        not creating or answer.status in (429, 503) or code == "NOT_PROCESSED"
    )
    status_code = TRANSIENT_WRITE_CODE if passing else (code or f"HTTP_{answer.status}")
    error = WriteError(
        status_code=status_code, message=f"{code or answer.status}: {message}", fields=fields_named(message)
    )
    return WriteResult(id=record_id, success=False, errors=(error,))


class BatchWriter:
    """Writes records in batches, sending again those refused for a passing reason."""

    def __init__(self, http: Transport, describes: Describes) -> None:
        self._http = http
        self._describes = describes

    def _operation(
        self, entity: Entity, record: CrmRecord, types: dict[str, str], *, creating: bool
    ) -> batch.Operation:
        body = outgoing(entity, record, types)
        if creating:
            return batch.Operation("POST", f"{self._http.web_api}/{entity.entity_set}", body)
        record_id = str(record.get("Id") or record.get(entity.primary_id))
        url = f"{self._http.web_api}/{entity.entity_set}({record_id})"
        return batch.Operation("PATCH", url, body, headers=(("If-Match", "*"),))

    async def write(
        self, entity: Entity, records: Sequence[CrmRecord], *, creating: bool
    ) -> list[WriteResult]:
        """Returns one result per record, in order."""
        described = await self._describes.describe(entity.role)
        types = {name: f.type for name, f in described.fields.items()}
        policy = self._http.policy
        results: list[WriteResult | None] = [None] * len(records)
        pending = list(range(len(records)))
        for attempt in range(1, policy.max_attempts + 1):
            wait_for = await self._round(entity, records, pending, types, results, creating=creating)
            # Records refused for a passing reason (throttled, not run) are sent again, alone.
            pending = [i for i in pending if is_transient_result(results[i])]
            if not pending or not policy.can_retry(attempt):
                break
            log.info("crm.write.retry", crm="dynamics", records=len(pending), attempt=attempt)
            hint = CrmTransientError("records refused for a passing reason")
            hint.retry_after = wait_for
            await asyncio.sleep(policy.wait(attempt, hint))
        return [r for r in results if r is not None]

    async def _round(
        self,
        entity: Entity,
        records: Sequence[CrmRecord],
        pending: list[int],
        types: dict[str, str],
        results: list[WriteResult | None],
        *,
        creating: bool,
    ) -> float | None:
        """Sends the pending records in batches, keeping each one's result; returns the longest Retry-After."""
        wait_for: float | None = None
        size = self._http.options.batch_size
        for start in range(0, len(pending), size):
            chunk = pending[start : start + size]
            operations = [self._operation(entity, records[i], types, creating=creating) for i in chunk]
            for index, answer in zip(chunk, await self._send(operations, creating=creating), strict=True):
                own_id = (
                    None
                    if creating
                    else str(records[index].get("Id") or records[index].get(entity.primary_id))
                )
                results[index] = _result(answer, record_id=own_id, creating=creating)
                asked = retry_after(answer.headers)
                if asked is not None:
                    wait_for = max(wait_for or 0.0, asked)
        return wait_for

    async def _send(self, operations: list[batch.Operation], *, creating: bool) -> list[batch.Answer]:
        """Returns one answer per operation of one `$batch` call (missing ones as not run)."""
        content_type, body = batch.encode(operations)
        operation = "create" if creating else "update"
        try:
            response = await self._http.call(
                "POST",
                "$batch",
                content=body,
                operation=operation,
                idempotent=not creating,
                calls=len(operations),  # each operation of a $batch is a request of the allowance
                headers={"Content-Type": content_type, "Prefer": "odata.continue-on-error"},
            )
        except CrmTransientError as exc:
            if not (creating and exc.maybe_applied):
                raise
            raise CrmTransientError(
                f"{operation} may have been applied ({exc.message}); not repeated, to avoid creating the records twice",
                error_code=exc.error_code,
                status=exc.status,
            ) from exc
        try:
            answers = batch.decode(response.headers.get("Content-Type"), response.content)
        except ValueError as exc:
            raise CrmRejected(
                f"{operation}: unreadable $batch answer ({exc})", status=response.status_code
            ) from exc
        if len(answers) > len(operations):
            raise CrmRejected(f"{operation}: {len(answers)} answers for {len(operations)} operations")
        return answers + [NOT_PROCESSED] * (len(operations) - len(answers))
