"""The sync schedule and Sync Now."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from crmsync.common.domain.schedule import ScheduleMode
from crmsync.mapping_api.schemas.common import Body, Text, example


class ScheduleIn(Body):
    mode: ScheduleMode = Field(description="automatic is recommended (R14).")
    interval_minutes: int | None = Field(None, ge=5, le=10080, description="For mode interval.")
    time_of_day: time | None = Field(
        None, description="For daily and weekly, in `timezone`.", examples=["02:30"]
    )
    weekday: int | None = Field(None, ge=0, le=6, description="For weekly: 0 = Monday … 6 = Sunday.")
    timezone: Annotated[Text, StringConstraints(min_length=1, max_length=64)] = Field(
        "UTC", examples=["Europe/Berlin"]
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"mode": "automatic"},
                {"mode": "interval", "interval_minutes": 30},
                {"mode": "weekly", "weekday": 0, "time_of_day": "02:30", "timezone": "Europe/Berlin"},
            ]
        }
    )


class DueTime(BaseModel):
    kind: Literal["full", "incremental"]
    at: datetime

    model_config = example(kind="incremental", at="2026-11-28T10:15:00Z")


class ScheduleOut(BaseModel):
    mode: ScheduleMode
    interval_minutes: int | None
    time_of_day: time | None
    weekday: int | None
    timezone: str
    automatic_interval_minutes: int | None = Field(
        description="For automatic: the interval chosen from the record count and the API budget."
    )
    full_sync_requested_at: datetime | None = Field(description="Set when the mapping gained a field (R15).")
    last_full_sync_at: datetime | None
    last_incremental_sync_at: datetime | None
    next_due: list[DueTime] = Field(description="The next scheduled syncs; empty for manual.")

    model_config = example(
        mode="automatic",
        interval_minutes=None,
        time_of_day=None,
        weekday=None,
        timezone="UTC",
        automatic_interval_minutes=15,
        full_sync_requested_at=None,
        last_full_sync_at="2026-11-20T02:00:00Z",
        last_incremental_sync_at="2026-11-28T10:00:00Z",
        next_due=[
            {"kind": "incremental", "at": "2026-11-28T10:15:00Z"},
            {"kind": "incremental", "at": "2026-11-28T10:30:00Z"},
            {"kind": "incremental", "at": "2026-11-28T10:45:00Z"},
        ],
    )


class SyncNowIn(Body):
    kind: Literal["full", "incremental"] | None = Field(
        None, description="Default: full until a full sync has succeeded, incremental afterwards."
    )

    model_config = ConfigDict(json_schema_extra={"examples": [{}, {"kind": "full"}]})


class SyncJobOut(BaseModel):
    job_id: str = Field(examples=["acme:incremental:sync_now:5f0c2a9e"])
    kind: Literal["full", "incremental"]
    reason: str = Field(examples=["sync_now"])
    requested_at: datetime

    model_config = example(
        job_id="acme:incremental:sync_now:5f0c2a9e1b2c",
        kind="incremental",
        reason="sync_now",
        requested_at="2026-11-28T10:00:00Z",
    )
