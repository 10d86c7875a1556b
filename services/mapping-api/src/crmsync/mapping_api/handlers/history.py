"""Sync runs and the push log: listed newest first in cursor pages, read one by one."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from crmsync.mapping_api.handlers.errors import Invalid, NotFound
from crmsync.mapping_api.handlers.ports import Transactions
from crmsync.mapping_api.values import Page, PushLogEntry, PushLogQuery, RunQuery, SyncRunInfo


def _encode_cursor(at: datetime, ident: object) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{ident}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        at, _, ident = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError("naive")
        return parsed, uuid.UUID(ident)
    except ValueError as exc:
        raise Invalid("not a cursor returned by this listing", field="cursor") from exc


async def list_sync_runs(
    tx: Transactions,
    *,
    account_id: str,
    kind: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[SyncRunInfo]:
    """Returns sync runs, newest first."""
    before = _decode_cursor(cursor) if cursor else None
    async with tx.read() as stores:
        query = RunQuery(kind=kind or None, status=status or None, before=before, limit=limit + 1)
        rows = await stores.sync_runs.page(account_id, query)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, _encode_cursor(rows[-1].created_at, rows[-1].id) if more else None)


async def get_sync_run(tx: Transactions, *, account_id: str, run_id: uuid.UUID) -> SyncRunInfo:
    """Returns one sync run of the caller's account."""
    async with tx.read() as stores:
        run = await stores.sync_runs.get(account_id, run_id)
    if run is None:
        raise NotFound("sync run not found", field="run_id")
    return run


async def list_push_log(
    tx: Transactions,
    *,
    account_id: str,
    contact_id: uuid.UUID | None = None,
    status: str | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> Page[PushLogEntry]:
    """Returns push log entries, newest first."""
    async with tx.read() as stores:
        query = PushLogQuery(contact_id=contact_id, status=status or None, before=cursor, limit=limit + 1)
        rows = await stores.push_log.page(account_id, query)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, str(rows[-1].id) if more else None)


async def get_push_log_entry(tx: Transactions, *, account_id: str, entry_id: int) -> PushLogEntry:
    """Returns one push log entry of the caller's account."""
    async with tx.read() as stores:
        entry = await stores.push_log.get(account_id, entry_id)
    if entry is None:
        raise NotFound("push log entry not found", field="entry_id")
    return entry
