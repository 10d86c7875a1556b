"""Reading ahead of the writer: order, bounds, errors and early stops (the puller's prefetch)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.puller.handlers.prefetch import prefetch


class Source:
    """An async stream of items that records how far it was read and whether it was closed."""

    def __init__(self, items: list[int], *, fail_after: int | None = None) -> None:
        self.items = items
        self.fail_after = fail_after
        self.read = 0
        self.closed = False

    async def stream(self) -> AsyncIterator[int]:
        try:
            for n, item in enumerate(self.items):
                if self.fail_after is not None and n == self.fail_after:
                    raise RuntimeError("the CRM went away")
                self.read += 1
                yield item
                await asyncio.sleep(0)
        finally:
            self.closed = True


@settings(max_examples=50, deadline=None)
@given(items=st.lists(st.integers(), max_size=50), depth=st.integers(min_value=1, max_value=5))
def test_every_item_comes_out_once_in_order(items: list[int], depth: int) -> None:
    async def run() -> list[int]:
        return [item async for item in prefetch(Source(items).stream(), depth=depth)]

    assert asyncio.run(run()) == items


@pytest.mark.parametrize("depth", [1, 2, 4])
async def test_the_reader_stays_at_most_depth_items_ahead(depth: int) -> None:
    source = Source(list(range(100)))
    ahead = []
    async for item in prefetch(source.stream(), depth=depth):
        await asyncio.sleep(0.001)  # the writer is slower than the reader
        ahead.append(source.read - (item + 1))
    # Queued items, plus the one the reader holds while it waits for room.
    assert max(ahead) <= depth + 1
    assert max(ahead) >= 1  # and it did read ahead


async def test_an_error_of_the_source_comes_after_the_items_read_before_it() -> None:
    source = Source(list(range(10)), fail_after=6)
    seen: list[int] = []
    with pytest.raises(RuntimeError, match="the CRM went away"):
        async for item in prefetch(source.stream(), depth=3):
            seen.append(item)
    assert seen == list(range(6))
    assert source.closed


async def test_a_consumer_that_stops_early_closes_the_source() -> None:
    source = Source(list(range(1000)))
    async with asyncio.timeout(5):
        stream = prefetch(source.stream(), depth=2)
        async for item in stream:
            if item == 3:
                break
        await stream.aclose()
    assert source.closed
    assert source.read < 10


def test_a_lookahead_below_one_is_refused() -> None:
    async def run() -> None:
        async for _ in prefetch(Source([1]).stream(), depth=0):
            pass

    with pytest.raises(ValueError, match="depth must be at least 1"):
        asyncio.run(run())
