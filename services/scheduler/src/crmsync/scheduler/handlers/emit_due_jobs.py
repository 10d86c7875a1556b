"""Use case: emit every job that is due now, each once (R14, R15, R18).

Only the accounts due are read: each carries when it is to be looked at next
(its schedule's next tick, written here once that tick's jobs are recorded;
at once after a change of what decides its jobs). Jobs are recorded in
scheduled_jobs and written to the outbox in one transaction with the next
looks; the outbox relay publishes them after the commit. A job id seen before
is neither recorded nor published again, so a second replica, a restart or a
clock set back emits nothing twice, and a crash after the commit loses nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from crmsync.common.domain.schedule import DueJob, due_jobs, next_tick_after
from crmsync.common.messages import RunOutbound, RunSync, SyncKind
from crmsync.common.messages.topics import OUTBOUND_JOBS, SYNC_JOBS
from crmsync.scheduler.handlers.ports import JobStore, Transactions
from crmsync.scheduler.values import AccountSchedule, Emitted, JobRecord, NextLook

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


def jobs_due(account: AccountSchedule, now: datetime) -> list[DueJob]:
    """Returns the account's jobs at `now` by its schedule (none while its saved schedule is unusable)."""
    if account.schedule is None:
        return []
    return due_jobs(
        account_id=account.account_id,
        schedule=account.schedule,
        last_runs=account.last_runs,
        now=now,
        record_count=account.record_count,
        daily_api_limit=account.daily_api_limit,
        allocated_calls=account.allocated_calls,
    )


def next_look(account: AccountSchedule, *, now: datetime, open_run_recheck: timedelta) -> NextLook:
    """Returns when to look at the account again: its next tick, or sooner while a sync of it is open.

    An open run holds back the tick's incremental, which is asked for once the run has
    ended (R15); nothing tells the scheduler when that is, so it looks again every
    `open_run_recheck` meanwhile.
    """
    at = None
    if account.schedule is not None:
        at = next_tick_after(
            schedule=account.schedule,
            moment=now,
            record_count=account.record_count,
            daily_api_limit=account.daily_api_limit,
            allocated_calls=account.allocated_calls,
            account_id=account.account_id,
        )
    if at is not None and account.last_runs.sync_in_progress:
        at = min(at, now + open_run_recheck)
    return NextLook(account.account_id, account.generation, at)


async def emit_due_jobs(
    *, jobs: Transactions[JobStore], now: datetime, limit: int, open_run_recheck: timedelta
) -> Emitted:
    """Emits the jobs of up to `limit` accounts due at `now`; returns those newly emitted."""
    async with jobs.begin() as store:
        accounts = await store.due_accounts(now=now, limit=limit)
        due = [
            job_message(job, account_id=a.account_id, now=now) for a in accounts for job in jobs_due(a, now)
        ]
        inserted = await store.record_new_jobs([record for record, _ in due])
        emitted = []
        for record, message in due:
            if (record.account_id, record.job_id) in inserted:
                store.enqueue(
                    account_id=record.account_id, topic=record.topic, key=record.account_id, message=message
                )
                emitted.append(record)
        await store.set_next_looks(
            [next_look(a, now=now, open_run_recheck=open_run_recheck) for a in accounts]
        )
    for record in emitted:
        log.info("job_emitted", account_id=record.account_id, job_id=record.job_id, kind=record.kind)
    return Emitted(emitted, len(accounts))
