"""The sync schedule in PostgreSQL."""

from __future__ import annotations

from datetime import datetime

from crmsync.common.db.schema import SyncSchedule
from crmsync.common.domain.schedule import Schedule, ScheduleMode
from crmsync.mapping_api.adapters.rows import SessionStore
from crmsync.mapping_api.values import StoredSchedule


class PostgresSchedules(SessionStore):
    async def get(self, account_id: str) -> StoredSchedule | None:
        record = await self._session.get(SyncSchedule, account_id)
        if record is None:
            return None
        schedule = Schedule(
            mode=ScheduleMode(record.mode),
            interval_minutes=record.interval_minutes,
            time_of_day=record.time_of_day,
            weekday=record.weekday,
            timezone=record.timezone,
        )
        return StoredSchedule(schedule, record.full_sync_requested_at)

    async def put(self, account_id: str, schedule: Schedule, *, updated_at: datetime) -> None:
        record = await self._session.get(SyncSchedule, account_id)
        if record is None:
            record = SyncSchedule(account_id=account_id)
            self._session.add(record)
        record.mode = schedule.mode.value
        record.interval_minutes = schedule.interval_minutes
        record.time_of_day = schedule.time_of_day
        record.weekday = schedule.weekday
        record.timezone = schedule.timezone
        record.updated_at = updated_at
        await self._session.flush()

    async def request_full_sync(self, account_id: str, *, at: datetime) -> None:
        record = await self._session.get(SyncSchedule, account_id)
        if record is None:
            record = SyncSchedule(account_id=account_id, mode=ScheduleMode.AUTOMATIC.value, timezone="UTC")
            self._session.add(record)
        record.full_sync_requested_at = at
        await self._session.flush()
