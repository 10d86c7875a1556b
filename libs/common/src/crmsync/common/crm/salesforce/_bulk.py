"""Bulk API 2.0 query jobs: create, wait, stream the CSV results locator by locator, delete."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator

import httpx
import orjson
import structlog

from crmsync.common.crm.interface import (
    CrmError,
    CrmRecord,
    CrmRejected,
    CrmTransientError,
    ObjectDescribe,
)
from crmsync.common.crm.salesforce import _soql as soql
from crmsync.common.crm.salesforce._transport import Transport
from crmsync.common.crm.salesforce._values import CsvRows, CsvShaper, Plan

log = structlog.get_logger(__name__)

# Bulk API 2.0 cannot export compound fields (nor binary ones); such exports go through REST.
BULK_UNSUPPORTED_TYPES = frozenset({"address", "location", "base64"})


def bulk_can_export(described: ObjectDescribe, names: Iterable[str]) -> bool:
    """Returns whether Bulk API 2.0 can export these fields of the object."""
    return not any(
        described.fields[name].type in BULK_UNSUPPORTED_TYPES for name in names if name in described.fields
    )


class BulkExport:
    """Exports a whole object through one Bulk API 2.0 query job."""

    def __init__(self, http: Transport) -> None:
        self._http = http

    async def stream(self, object_name: str, names: list[str], plan: Plan) -> AsyncIterator[list[CrmRecord]]:
        """Yields every record of the object in batches; the job is deleted afterwards."""
        statement = soql.select(names, object_name)
        response = await self._http.call(
            "POST",
            f"{self._http.api}/jobs/query",
            json={
                "operation": "query",
                "query": statement,
                "contentType": "CSV",
                "columnDelimiter": "COMMA",
                "lineEnding": "LF",
            },
            operation="bulk_create",
        )
        job_id = orjson.loads(response.content)["id"]
        complete = False
        try:
            await self._await_job(job_id)
            complete = True
            async for batch in self._results(job_id, plan):
                yield batch
        finally:
            await self._delete_job(job_id, running=not complete)

    async def _delete_job(self, job_id: str, *, running: bool) -> None:
        """Deletes a query job and its results (Salesforce keeps them for 7 days otherwise).

        A job that may still be running is aborted first: it cannot be deleted.
        Best effort: a job left behind costs the org storage, not correctness.
        """
        url = f"{self._http.api}/jobs/query/{job_id}"
        try:
            if running:
                with contextlib.suppress(CrmRejected):  # it completed (or failed) meanwhile
                    await self._http.call("PATCH", url, json={"state": "Aborted"}, operation="bulk_abort")
            await self._http.call("DELETE", url, operation="bulk_delete")
        except (CrmError, httpx.HTTPError) as exc:
            log.warning("bulk_job_not_deleted", job_id=job_id, error=str(exc))

    async def _await_job(self, job_id: str) -> None:
        opts = self._http.options
        interval = opts.bulk_poll_interval_s
        deadline = asyncio.get_running_loop().time() + opts.bulk_timeout_s
        while True:
            response = await self._http.call(
                "GET", f"{self._http.api}/jobs/query/{job_id}", operation="bulk_status"
            )
            job = orjson.loads(response.content)
            state = job.get("state")
            if state == "JobComplete":
                return
            if state in ("Failed", "Aborted"):
                raise CrmRejected(
                    f"Bulk query job {job_id} {state.lower()}: {job.get('errorMessage') or ''}".strip(),
                    error_code=f"BULK_JOB_{state.upper()}",
                )
            if asyncio.get_running_loop().time() > deadline:
                raise CrmTransientError(f"Bulk query job {job_id} still {state} after {opts.bulk_timeout_s}s")
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, opts.bulk_poll_max_interval_s)

    async def _results(self, job_id: str, plan: Plan) -> AsyncIterator[list[CrmRecord]]:
        """Yields the job's CSV rows as batches, parsed while they arrive, locator by locator.

        A connection lost mid-body asks for the same locator again and skips the
        rows already yielded, so nothing is duplicated or lost.
        """
        opts = self._http.options
        path = f"{self._http.api}/jobs/query/{job_id}/results"
        locator: str | None = None
        while True:
            params = {"maxRecords": str(opts.bulk_max_records)}
            if locator:
                params["locator"] = locator
            emitted = 0
            failures = 0
            next_locator: str | None = None
            while True:
                response = await self._http.call(
                    "GET", path, params=params, operation="bulk_results", stream=True
                )
                page = _LocatorPage(plan, skip=emitted)
                try:
                    async with contextlib.aclosing(page.batches(response, size=opts.page_size)) as batches:
                        async for batch in batches:
                            emitted += len(batch)
                            yield batch
                    next_locator = response.headers.get("Sforce-Locator")
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    failures += 1
                    if not self._http.policy.can_retry(failures):
                        raise CrmTransientError(f"Bulk results of {job_id} kept failing: {exc!r}") from exc
                    log.warning("crm.bulk.resume", job=job_id, rows_done=emitted, error=repr(exc))
                    await asyncio.sleep(self._http.policy.delay(failures))
                    continue
                finally:
                    await response.aclose()
                break
            if not next_locator or next_locator == "null":
                return
            locator = next_locator


class _LocatorPage:
    """One locator page of CSV results, shaped, past the rows an earlier try already yielded."""

    def __init__(self, plan: Plan, *, skip: int) -> None:
        self._plan = plan
        self._skip = skip
        self._rows = CsvRows()
        self._shaper: CsvShaper | None = None

    async def batches(self, response: httpx.Response, *, size: int) -> AsyncIterator[list[CrmRecord]]:
        """Yields batches of `size` records as the body arrives; the page's last rows at its end."""
        batch: list[CrmRecord] = []
        async for text in response.aiter_text():
            for record in self._shaped(self._rows.feed(text)):
                batch.append(record)
                if len(batch) == size:
                    yield batch
                    batch = []
        batch.extend(self._shaped(self._rows.close()))
        # Batches never span two pages.
        if batch:
            yield batch

    def _shaped(self, rows: Iterable[list[str]]) -> Iterator[CrmRecord]:
        for row in rows:
            if self._shaper is None:
                self._shaper = CsvShaper(row, self._plan)
            elif self._skip:
                self._skip -= 1
            else:
                yield self._shaper.shape(row)
