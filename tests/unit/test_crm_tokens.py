"""The sign-in token both connectors share between their calls."""

from __future__ import annotations

import asyncio

import pytest

from crmsync.common.crm.interface import CrmTransientError
from crmsync.common.crm.tokens import TokenCache


async def test_calls_waiting_for_a_token_share_one_sign_in_and_its_failure() -> None:
    attempts = 0
    release = asyncio.Event()

    async def failing() -> str:
        nonlocal attempts
        attempts += 1
        await release.wait()
        raise CrmTransientError("the identity platform is down")

    tokens: TokenCache[str] = TokenCache(failing, crm="test")
    waiting = [asyncio.create_task(tokens.current()) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert attempts == 1
    assert all(isinstance(r, CrmTransientError) for r in results)
    # A later call tries again.
    with pytest.raises(CrmTransientError):
        await tokens.current()
    assert attempts == 2


async def test_a_refused_token_is_renewed_once_for_all_calls_refused_with_it() -> None:
    issued = iter(["t1", "t2", "t3"])

    async def obtain() -> str:
        return next(issued)

    tokens: TokenCache[str] = TokenCache(obtain, crm="test")
    stale = await tokens.current()
    assert await asyncio.gather(tokens.renew(stale), tokens.renew(stale)) == ["t2", "t2"]
    assert await tokens.current() == "t2"


async def test_a_token_about_to_expire_is_replaced_before_use() -> None:
    issued = iter(["t1", "t2"])
    expired: set[str] = set()

    async def obtain() -> str:
        return next(issued)

    tokens: TokenCache[str] = TokenCache(obtain, fresh=lambda t: t not in expired, crm="test")
    assert await tokens.current() == "t1"
    assert await tokens.current() == "t1"
    expired.add("t1")
    assert await tokens.current() == "t2"
