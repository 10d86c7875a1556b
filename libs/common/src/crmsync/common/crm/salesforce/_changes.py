"""Changes of an object through an opaque cursor: the modified-since watermark and the
deleted feed's, kept together as a small versioned JSON text.

The cursor's shape (what a migration from stored watermarks builds)::

    {"v": 1, "modified_since": "2026-11-20T08:00:00+00:00", "deleted_since": "2026-11-20T08:00:00+00:00"}

Both are ISO 8601 date-times with an offset (PostgreSQL's `to_json(timestamptz)` is one);
`deleted_since` may be null, and then follows `modified_since`. A read re-reads each of them
`change_lookback_s` before it (late commits, ties at the watermark's second, clock skew).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from crmsync.common.clock import utc_now
from crmsync.common.crm.interface import ChangeBatch, ChangeCursorExpired, CrmRecord, DeletedRecord

CURSOR_VERSION = 1
MODIFIED = "SystemModstamp"


@dataclass(frozen=True)
class ChangeCursor:
    """Where the next read of an object's changes starts: its modifications and its deletions."""

    modified_since: datetime
    deleted_since: datetime

    def text(self) -> str:
        """Returns the cursor as the opaque text the services keep."""
        return orjson.dumps(
            {
                "v": CURSOR_VERSION,
                "modified_since": self.modified_since.astimezone(UTC).isoformat(),
                "deleted_since": self.deleted_since.astimezone(UTC).isoformat(),
            }
        ).decode()

    @classmethod
    def parse(cls, text: str) -> ChangeCursor:
        """Returns the cursor of a text `text()` made; ChangeCursorExpired for one it cannot follow."""
        try:
            body: Any = orjson.loads(text)
            if not isinstance(body, dict) or body.get("v") != CURSOR_VERSION:
                raise ValueError(f"not a version {CURSOR_VERSION} cursor")
            modified = _aware(datetime.fromisoformat(str(body["modified_since"])))
            deleted = body.get("deleted_since")
            return cls(modified, _aware(datetime.fromisoformat(str(deleted))) if deleted else modified)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ChangeCursorExpired(
                f"the change cursor cannot be followed ({exc}); read everything again",
                error_code="INVALID_CURSOR",
            ) from exc


def cursor_from_watermarks(watermark: datetime, deleted_watermark: datetime | None = None) -> str:
    """Returns the cursor continuing from stored watermarks (the deleted one defaults to the other)."""
    return ChangeCursor(_aware(watermark), _aware(deleted_watermark or watermark)).text()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def full_read(
    batches: AsyncIterator[list[CrmRecord]], *, began: datetime
) -> AsyncIterator[ChangeBatch]:
    """Yields every record as it is read, then an empty last batch with the cursor from the
    moment the read began.

    A full read is not ordered by time, so no batch before the last is a resume point; each
    is yielded at once all the same, so what was read is kept should a later page fail.
    """
    async for batch in batches:
        yield ChangeBatch(records=batch)
    yield ChangeBatch(records=[], cursor=ChangeCursor(began, began).text())


async def incremental_read(
    changed: Callable[[datetime], AsyncIterator[list[CrmRecord]]],
    deleted: Callable[[datetime, datetime], Awaitable[list[DeletedRecord]]],
    cursor: ChangeCursor,
    *,
    lookback: timedelta,
) -> AsyncIterator[ChangeBatch]:
    """Yields what changed since the cursor, each batch with the cursor resuming after it, then
    what was deleted since the cursor's deleted watermark (the last batch)."""
    modified = cursor.modified_since
    async for batch in changed(cursor.modified_since - lookback):
        times = [r[MODIFIED] for r in batch if isinstance(r.get(MODIFIED), datetime)]
        modified = max([modified, *times])
        yield ChangeBatch(records=batch, cursor=ChangeCursor(modified, cursor.deleted_since).text())
    end = utc_now()
    gone = await deleted(cursor.deleted_since - lookback, end)
    yield ChangeBatch(records=[], deleted_ids=[d.id for d in gone], cursor=ChangeCursor(modified, end).text())
