"""Use case: emit every job that is due now, each once (R14, R15, R18).

Jobs are recorded in scheduled_jobs and written to the outbox in one
transaction; the outbox relay publishes them after the commit. A job id seen
before is neither recorded nor published again, so a second replica, a
restart or a clock set back emits nothing twice, and a crash after the
commit loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.domain.schedule import due_jobs
from crmsync.common.kafka.outbox import enqueue
from crmsync.common.kafka.topics import OUTBOUND_JOBS, SYNC_JOBS
from crmsync.common.messages import RunOutbound, RunSync, SyncKind
from crmsync.scheduler.adapters.repository import JobRecord, load_account_schedules, record_new_jobs

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Emitted:
    account_id: str
    job_id: str
    kind: str


async def emit_due_jobs(*, sessions: async_sessionmaker[AsyncSession], now: datetime) -> list[Emitted]:
    """Returns the jobs newly emitted (recorded and queued for publishing) at `now`."""
    async with sessions.begin() as session:
        accounts = await load_account_schedules(session)
        records: list[JobRecord] = []
        messages: dict[tuple[str, str], RunSync | RunOutbound] = {}
        for account in accounts:
            for job in due_jobs(
                account_id=account.account_id,
                schedule=account.schedule,
                last_runs=account.last_runs,
                now=now,
                record_count=account.record_count,
                daily_api_limit=account.daily_api_limit,
            ):
                if job.kind == "scores_optouts":
                    topic = OUTBOUND_JOBS
                    message: RunSync | RunOutbound = RunOutbound(
                        job_id=job.job_id, account_id=account.account_id, requested_at=now
                    )
                else:
                    assert job.reason is not None
                    topic = SYNC_JOBS
                    message = RunSync(
                        job_id=job.job_id,
                        account_id=account.account_id,
                        kind=SyncKind(job.kind),
                        reason=job.reason,
                        requested_at=now,
                    )
                reason = job.reason.value if job.reason else job.kind
                records.append(JobRecord(account.account_id, job.job_id, topic, job.kind, reason, job.slot))
                messages[(account.account_id, job.job_id)] = message
        inserted = await record_new_jobs(session, records)
        emitted = []
        for record in records:
            key = (record.account_id, record.job_id)
            if key in inserted:
                enqueue(
                    session,
                    account_id=record.account_id,
                    topic=record.topic,
                    key=record.account_id,
                    message=messages[key],
                )
                emitted.append(Emitted(record.account_id, record.job_id, record.kind))
    for e in emitted:
        log.info("job_emitted", account_id=e.account_id, job_id=e.job_id, kind=e.kind)
    return emitted
