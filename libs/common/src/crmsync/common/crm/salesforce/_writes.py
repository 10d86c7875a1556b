"""Creates and updates through composite sObject collections, 200 records a call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from crmsync.common.crm.interface import CrmRecord, CrmRejected, CrmTransientError, WriteError, WriteResult
from crmsync.common.crm.salesforce import _soql as soql
from crmsync.common.crm.salesforce._transport import Transport
from crmsync.common.crm.salesforce._values import to_salesforce
from crmsync.common.retry import is_transient_result

log = structlog.get_logger(__name__)

COLLECTION_LIMIT = 200  # records per composite sObject collection call


class CompositeWriter:
    """Writes records in collections (allOrNone false), sending again those refused for a passing reason."""

    def __init__(self, http: Transport) -> None:
        self._http = http

    async def write(
        self, method: str, object_name: str, records: Sequence[CrmRecord], *, operation: str
    ) -> list[WriteResult]:
        """Returns one result per record, in order."""
        soql.check_name(object_name)
        policy = self._http.policy
        results: list[WriteResult | None] = [None] * len(records)
        pending = list(range(len(records)))
        for attempt in range(1, policy.max_attempts + 1):
            for offset in range(0, len(pending), COLLECTION_LIMIT):
                chunk = pending[offset : offset + COLLECTION_LIMIT]
                answers = await self._send(
                    method, object_name, [records[i] for i in chunk], operation=operation
                )
                for index, answer in zip(chunk, answers, strict=True):
                    results[index] = _write_result(answer)
            # Records refused for a passing reason (a locked row) are sent again, alone.
            pending = [i for i in pending if is_transient_result(results[i])]
            if not pending or not policy.can_retry(attempt):
                break
            log.info("crm.write.retry", operation=operation, records=len(pending), attempt=attempt)
            await asyncio.sleep(policy.delay(attempt))
        return [r for r in results if r is not None]

    async def _send(
        self, method: str, object_name: str, records: list[CrmRecord], *, operation: str
    ) -> list[dict[str, Any]]:
        """Returns Salesforce's answer for each record of one collection call."""
        body = {"allOrNone": False, "records": [_outgoing(object_name, record) for record in records]}
        try:
            response = await self._http.call(
                method,
                f"{self._http.api}/composite/sobjects",
                json=body,
                operation=operation,
                idempotent=method != "POST",
            )
        except CrmTransientError as exc:
            if not exc.maybe_applied or method != "POST":
                raise
            raise CrmTransientError(
                f"{operation} may have been applied ({exc.message}); not repeated, "
                "to avoid creating the records twice",
                error_code=exc.error_code,
                status=exc.status,
            ) from exc
        answers = orjson.loads(response.content)
        if not isinstance(answers, list) or len(answers) != len(records):
            raise CrmRejected(
                f"{operation} answered {len(answers) if isinstance(answers, list) else 'no'} "
                f"results for {len(records)} records",
                status=response.status_code,
            )
        return answers


def _outgoing(object_name: str, record: CrmRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"attributes": {"type": object_name}}
    for key, value in record.items():
        if key != "attributes":
            out[key] = to_salesforce(value)
    return out


def _write_result(answer: dict[str, Any]) -> WriteResult:
    errors = tuple(
        WriteError(
            status_code=str(e.get("statusCode") or e.get("errorCode") or "UNKNOWN"),
            message=str(e.get("message") or ""),
            fields=tuple(e.get("fields") or ()),
        )
        for e in answer.get("errors") or ()
    )
    return WriteResult(id=answer.get("id"), success=bool(answer.get("success")), errors=errors)
