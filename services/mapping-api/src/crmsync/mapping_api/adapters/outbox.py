"""Messages written to the transactional outbox, published by the relay after the commit."""

from __future__ import annotations

from crmsync.common.kafka.outbox import enqueue
from crmsync.common.kafka.topics import CONTACT_CHANGES, OUTBOUND_JOBS, SYNC_JOBS
from crmsync.common.messages import ContactChanged, RunOutbound, RunSync, contact_change_key
from crmsync.mapping_api.adapters.rows import SessionStore


class PostgresOutbox(SessionStore):
    def sync_job(self, job: RunSync) -> None:
        enqueue(self._session, account_id=job.account_id, topic=SYNC_JOBS, key=job.account_id, message=job)

    def outbound_job(self, job: RunOutbound) -> None:
        enqueue(self._session, account_id=job.account_id, topic=OUTBOUND_JOBS, key=job.account_id, message=job)

    def contact_change(self, event: ContactChanged) -> None:
        key = contact_change_key(event).decode()
        enqueue(self._session, account_id=event.account_id, topic=CONTACT_CHANGES, key=key, message=event)
