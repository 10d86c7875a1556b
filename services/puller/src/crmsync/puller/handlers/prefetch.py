"""Read ahead of the writer: the next batches are fetched and mapped while one is stored.

A sync alternates between waiting on the CRM (and mapping what it sent) and
waiting on PostgreSQL. Run one after the other, each side idles while the
other works; run side by side, a batch is fetched and mapped while the one
before it is written. The lookahead is bounded, so memory stays flat.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


async def prefetch(source: AsyncIterator[T], *, depth: int) -> AsyncIterator[T]:
    """Yields `source`'s items in order, reading up to `depth` items ahead in a task.

    An exception raised by `source` is raised here, after the items before it.
    When the consumer stops early, the reading task is cancelled and `source`
    closed.
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=depth)

    async def read() -> None:
        try:
            async for item in source:
                await queue.put(item)
        except Exception as exc:  # handed to the consumer, which raises it in order
            await queue.put(_Failure(exc))
            return
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        await queue.put(_DONE)

    reader = asyncio.create_task(read(), name="prefetch")
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        if not reader.done():
            reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


class _Failure:
    def __init__(self, error: Exception) -> None:
        self.error = error
