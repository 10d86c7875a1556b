"""The Salesforce change cursor: its text, and what a migration from stored watermarks builds (R18)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from crmsync.common.crm.interface import ChangeCursorExpired
from crmsync.common.crm.salesforce import DeletedFeedWindowExceeded, SalesforceConnector
from crmsync.common.crm.salesforce._changes import ChangeCursor

T0 = datetime(2026, 11, 20, 8, 0, 0, 157000, tzinfo=UTC)


def test_r18_a_cursor_keeps_both_watermarks_through_its_text() -> None:
    cursor = ChangeCursor(T0, T0 + timedelta(minutes=5))
    assert ChangeCursor.parse(cursor.text()) == cursor
    assert orjson.loads(cursor.text()) == {
        "v": 1,
        "modified_since": "2026-11-20T08:00:00.157000+00:00",
        "deleted_since": "2026-11-20T08:05:00.157000+00:00",
    }


def test_r18_a_cursor_from_stored_watermarks_continues_from_them() -> None:
    text = SalesforceConnector.cursor_from_watermarks(T0, T0 + timedelta(seconds=1))
    assert ChangeCursor.parse(text) == ChangeCursor(T0, T0 + timedelta(seconds=1))
    # No deleted watermark yet: the deletions follow from the modified one, as before.
    assert ChangeCursor.parse(SalesforceConnector.cursor_from_watermarks(T0)) == ChangeCursor(T0, T0)


def test_r18_a_cursor_built_in_sql_from_timestamptz_columns_is_read() -> None:
    # What PostgreSQL's json_build_object('v', 1, 'modified_since', watermark, ...) writes.
    text = '{"v": 1, "modified_since": "2026-11-20T09:00:00.157+01:00", "deleted_since": null}'
    cursor = ChangeCursor.parse(text)
    assert cursor.modified_since == T0 and cursor.deleted_since == T0
    assert cursor.modified_since.tzinfo is not None
    plus_one = timezone(timedelta(hours=1))
    assert cursor.modified_since == datetime(2026, 11, 20, 9, 0, 0, 157000, tzinfo=plus_one)


@pytest.mark.parametrize(
    "text", ["", "not json", "[]", '{"v": 2, "modified_since": "2026-11-20T08:00:00+00:00"}', '{"v": 1}']
)
def test_r18_a_cursor_that_cannot_be_followed_asks_for_a_full_read(text: str) -> None:
    with pytest.raises(ChangeCursorExpired):
        ChangeCursor.parse(text)


def test_r16_the_deleted_feed_window_passing_is_a_cursor_expiring() -> None:
    assert issubclass(DeletedFeedWindowExceeded, ChangeCursorExpired)
