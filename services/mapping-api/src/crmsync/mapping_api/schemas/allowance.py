"""The account's API allowance: crmsync's part of the CRM's daily API limit (R26)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from crmsync.mapping_api.schemas.common import Body, example

# The largest number of calls the database holds (a 32-bit integer).
MAX_CALLS = 2_147_483_647


class ApiAllowanceIn(Body):
    share: float | None = Field(
        None,
        gt=0,
        le=1,
        strict=True,
        description="A share of the CRM's daily API limit (0.25: a quarter of it). Not with `calls`.",
    )
    calls: int | None = Field(
        None, gt=0, le=MAX_CALLS, strict=True, description="A number of calls a day. Not with `share`."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"share": 0.25}, {"calls": 5000}, {}]},
    )


class ApiAllowanceOut(BaseModel):
    share: float | None = Field(description="The allocation as a share of the daily limit, if given so.")
    calls: int | None = Field(description="The allocation as a number of calls a day, if given so.")
    api_limit: int | None = Field(description="The CRM's daily API limit as last seen (the connection test).")
    api_limit_checked_at: datetime | None = Field(description="When the limit was last seen.")
    allocated_calls: int | None = Field(
        description="Calls crmsync may make today; null: no allocation holds it (or a share of a limit "
        "not seen yet)."
    )
    day: date = Field(description="The CRM day counted (UTC).")
    used_today: int = Field(
        description="Calls crmsync took today, by every service (a running process's unspent lease included)."
    )
    remaining_today: int | None = Field(description="Calls left today; null without an allocation.")

    model_config = example(
        share=0.25,
        calls=None,
        api_limit=15000,
        api_limit_checked_at="2026-11-28T09:00:00Z",
        allocated_calls=3750,
        day="2026-11-28",
        used_today=1220,
        remaining_today=2530,
    )
