"""The pusher's store waits for a database that does not answer (a restart) instead of stopping the
process, for a while; an error of the work itself is raised at once (R18, R22)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from crmsync.pusher.adapters.store import PgStore, _unavailable


def _store(outage_s: float) -> PgStore:
    return PgStore(None, autocommit=None, outage_s=outage_s)  # type: ignore[arg-type]


def test_a_refused_or_closed_connection_is_the_database_unavailable_a_bad_statement_is_not() -> None:
    assert _unavailable(ConnectionRefusedError(111, "Connect call failed"))
    assert _unavailable(DBAPIError("select 1", {}, Exception("connection is closed")))
    assert not _unavailable(IntegrityError("insert", {}, Exception("duplicate key value")))
    assert not _unavailable(
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress")
    )
    assert not _unavailable(ValueError("a bug"))


async def test_work_is_run_again_until_the_database_answers() -> None:
    failures = [ConnectionRefusedError(111, "refused"), ConnectionRefusedError(111, "refused")]

    async def attempt() -> str:
        if failures:
            raise failures.pop()
        return "done"

    assert await _store(outage_s=30).retry_if_connection_lost(attempt, step="t") == "done"


async def test_an_outage_longer_than_the_wait_and_any_other_error_are_raised() -> None:
    async def refused() -> None:
        raise ConnectionRefusedError(111, "refused")

    async def bug() -> None:
        raise ValueError("a bug")

    with pytest.raises(ConnectionRefusedError):
        await _store(outage_s=0).retry_if_connection_lost(refused, step="t")
    with pytest.raises(ValueError):
        await _store(outage_s=30).retry_if_connection_lost(bug, step="t")
