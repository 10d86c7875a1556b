"""A connection's sign-in token, shared by every call of one connector (every connector's)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog

from crmsync.common.crm.interface import CrmError

log = structlog.get_logger(__name__)

T = TypeVar("T")


class TokenCache(Generic[T]):
    """The token: obtained once, renewed when the CRM refuses it or (by `fresh`) it is about to expire.

    `obtain` returns a fresh token, retries and all. Calls that waited behind an attempt
    that failed share its failure: the CRM is unreachable or refuses the sign-in now, and
    trying again at once would only repeat that, once per waiting call.
    """

    def __init__(
        self, obtain: Callable[[], Awaitable[T]], *, fresh: Callable[[T], bool] | None = None, crm: str
    ) -> None:
        self._obtain = obtain
        self._fresh = fresh or (lambda token: True)
        self._crm = crm
        self._token: T | None = None
        self._lock = asyncio.Lock()
        self._failures = 0
        self._last_failure: CrmError | None = None

    def _usable(self) -> T | None:
        token = self._token
        return token if token is not None and self._fresh(token) else None

    async def current(self) -> T:
        """Returns a usable token, obtaining one when there is none or it is about to expire."""
        token = self._usable()
        if token is not None:
            return token
        failures_before = self._failures
        async with self._lock:
            token = self._usable()
            if token is not None:
                return token
            if self._failures != failures_before and self._last_failure is not None:
                failure = self._last_failure
                raise copy.copy(failure) from failure
            try:
                token = await self._obtain()
            except CrmError as exc:
                self._failures += 1
                self._last_failure = exc
                raise
            self._token = token
            return token

    async def renew(self, stale: T) -> T:
        """Returns a token other than `stale` (refused by the CRM)."""
        if self._token is stale:
            # Calls refused with the same token share one renewal: the first drops it, all wait for the next.
            self._token = None
            log.info("crm.token.renew", crm=self._crm)
        return await self.current()
