"""Use case: emit every job that is due now, each once (R14, R15, R18).

Jobs are recorded in scheduled_jobs and written to the outbox in one
transaction; the outbox relay publishes them after the commit. A job id seen
before is neither recorded nor published again, so a second replica, a
restart or a clock set back emits nothing twice, and a crash after the
commit loses nothing.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from crmsync.common.domain.schedule import DueJob, due_jobs
from crmsync.common.messages import RunOutbound, RunSync, SyncKind
from crmsync.common.messages.topics import OUTBOUND_JOBS, SYNC_JOBS
from crmsync.scheduler.handlers.ports import JobStore, Transactions
from crmsync.scheduler.values import AccountSchedule, JobRecord

log = structlog.get_logger(__name__)


def job_message(job: DueJob, *, account_id: str, now: datetime) -> tuple[JobRecord, RunSync | RunOutbound]:
    """Returns the record of a due job and the message that asks for it."""
    message: RunSync | RunOutbound
    if job.kind == "scores_optouts":
        topic = OUTBOUND_JOBS
        message = RunOutbound(job_id=job.job_id, account_id=account_id, requested_at=now)
    else:
        assert job.reason is not None
        topic = SYNC_JOBS
        message = RunSync(
            job_id=job.job_id,
            account_id=account_id,
            kind=SyncKind(job.kind),
            reason=job.reason,
            requested_at=now,
        )
    reason = job.reason.value if job.reason else job.kind
    return JobRecord(account_id, job.job_id, topic, job.kind, reason, job.slot), message


def _due(account: AccountSchedule, now: datetime) -> list[DueJob]:
    return due_jobs(
        account_id=account.account_id,
        schedule=account.schedule,
        last_runs=account.last_runs,
        now=now,
        record_count=account.record_count,
        daily_api_limit=account.daily_api_limit,
    )


async def emit_due_jobs(*, jobs: Transactions[JobStore], now: datetime) -> list[JobRecord]:
    """Returns the jobs newly emitted (recorded and queued for publishing) at `now`."""
    async with jobs.begin() as store:
        due = [
            job_message(job, account_id=account.account_id, now=now)
            for account in await store.account_schedules()
            for job in _due(account, now)
        ]
        inserted = await store.record_new_jobs([record for record, _ in due])
        emitted = []
        for record, message in due:
            if (record.account_id, record.job_id) in inserted:
                store.enqueue(
                    account_id=record.account_id, topic=record.topic, key=record.account_id, message=message
                )
                emitted.append(record)
    for record in emitted:
        log.info("job_emitted", account_id=record.account_id, job_id=record.job_id, kind=record.kind)
    return emitted
