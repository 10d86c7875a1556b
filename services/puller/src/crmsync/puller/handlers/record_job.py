"""Use case: a sync job arrived; queue it as a sync run, once (R18).

The run itself executes later, from the table, so a long full sync never
holds the consumer (and its partition) hostage, and the offset is committed as
soon as the job is safely recorded.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from crmsync.common.messages import RunSync
from crmsync.puller.handlers.ports import JobStore

log = structlog.get_logger(__name__)


async def record_jobs(*, store: JobStore, jobs: Sequence[RunSync]) -> int:
    """Returns how many of the jobs were new (a re-delivered job is ignored)."""
    new = await store.record_jobs(jobs)
    for job, is_new in zip(jobs, new, strict=True):
        if is_new:
            log.info("sync_job_queued", account_id=job.account_id, job_id=job.job_id, kind=job.kind.value)
        else:
            log.info("sync_job_known", account_id=job.account_id, job_id=job.job_id)
    return sum(new)
