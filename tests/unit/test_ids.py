"""Row ids: version 7 UUIDs that sort by creation time."""

from __future__ import annotations

import time
import uuid

from hypothesis import given
from hypothesis import strategies as st

from crmsync.common.db.ids import new_id

MS = st.integers(min_value=0, max_value=(1 << 48) - 1)


@given(ms=MS)
def test_an_id_is_an_rfc_9562_version_7_uuid_carrying_its_millisecond(ms: int) -> None:
    value = new_id(now_ms=ms)
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 == ms


@given(earlier=MS, later=MS)
def test_an_id_of_a_later_millisecond_sorts_after_one_of_an_earlier(earlier: int, later: int) -> None:
    if earlier < later:
        assert new_id(now_ms=earlier) < new_id(now_ms=later)


def test_ids_of_the_same_millisecond_differ() -> None:
    ids = {new_id(now_ms=1_764_000_000_000) for _ in range(10_000)}
    assert len(ids) == 10_000


def test_ids_made_now_carry_the_current_time() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= value.int >> 80 <= after
