"""Use case: a sync job arrived; queue it as a sync run, once (R18).

The run itself executes later, from the table, so a long full sync never
holds the consumer (and its partition) hostage, and the offset is committed as
soon as the job is safely recorded.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.messages import RunSync
from crmsync.puller.adapters.runs import record_job

log = structlog.get_logger(__name__)


async def record_jobs(*, sessions: async_sessionmaker[AsyncSession], jobs: Sequence[RunSync]) -> int:
    """Returns how many of the jobs were new (a re-delivered job is ignored)."""
    new = 0
    async with sessions.begin() as session:
        for job in jobs:
            if await record_job(session, job=job):
                new += 1
                log.info("sync_job_queued", account_id=job.account_id, job_id=job.job_id, kind=job.kind.value)
            else:
                log.info("sync_job_known", account_id=job.account_id, job_id=job.job_id)
    return new
