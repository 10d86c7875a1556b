"""Crash safety of the puller process (R18): SIGKILL in the middle of a full sync of 50,000 records,
against each emulated CRM."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crmsync.common.db.schema import Contact, SyncRun
from crmsync.common.messages import RunSync, SyncKind, SyncReason
from tests.integration.test_puller_sync import store_of
from tests.support.broker import publish
from tests.support.crm_backends import CrmBackend, connect, crm_backend, make_crm
from tests.support.processes import Process, service_env, start_service, wait_for

__all__ = ["crm_backend", "make_crm"]
pytestmark = pytest.mark.integration


def _start_puller(settings, backend: CrmBackend, *, group: str, log: Path) -> Process:
    env = service_env(
        settings,
        CRMSYNC_ENVIRONMENT="test",
        CRMSYNC_PULLER_GROUP_ID=group,
        CRMSYNC_PULLER_POLL_S="0.3",
        CRMSYNC_PULLER_BATCH_SIZE="1000",
        **backend.service_env(),
    )
    return start_service("crmsync.puller", env=env, log=log)


async def test_r18_a_puller_killed_mid_full_sync_of_50000_records_and_restarted_ends_equal_to_the_crm(
    sessions, settings, account_id, crm_backend: CrmBackend, make_crm, tmp_path: Path
) -> None:
    crm = make_crm(leads=25_000, contacts=25_000, seed=41)
    await connect(sessions, settings, account_id, crm)
    job = RunSync(
        job_id=f"{account_id}:full:crash",
        account_id=account_id,
        kind=SyncKind.FULL,
        reason=SyncReason.FIRST_SYNC,
        requested_at=datetime.now(UTC),
    )
    await publish(settings, [job])

    async def run() -> SyncRun | None:
        async with sessions() as session:
            return await session.scalar(
                select(SyncRun).where(SyncRun.account_id == account_id, SyncRun.job_id == job.job_id)
            )

    async def stored() -> int:
        async with sessions() as session:
            return await session.scalar(
                select(func.count()).select_from(Contact).where(Contact.account_id == account_id)
            )

    group = f"puller-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "puller.log"

    async def midway() -> bool:
        current = await run()
        return current is not None and current.pulled >= 12_000

    with _start_puller(settings, crm_backend, group=group, log=log) as first:
        await wait_for(midway, timeout=240, what="the full sync to be under way", process=first)
        first.kill()
    interrupted = await run()
    assert interrupted.status == "running"
    assert 0 < await stored() < 50_000

    async def finished() -> bool:
        current = await run()
        return current is not None and current.status in ("succeeded", "failed")

    with _start_puller(settings, crm_backend, group=group, log=log) as second:
        await wait_for(finished, timeout=300, what="the resumed full sync to finish", process=second)
        assert second.stop(timeout=15) == 0

    done = await run()
    assert done.status == "succeeded", done.error
    assert done.attempts == 2
    assert await stored() == 50_000
    # store_of refuses duplicate external ids; equality means nothing lost and nothing extra.
    assert await store_of(sessions, account_id) == crm.expected_store()
    async with sessions() as session:
        runs = await session.scalar(
            select(func.count()).select_from(SyncRun).where(SyncRun.account_id == account_id)
        )
    assert runs == 1  # the job was recorded once, the restart resumed it
