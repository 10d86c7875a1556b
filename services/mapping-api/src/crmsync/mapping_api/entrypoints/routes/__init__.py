"""Every resource's router, gathered under /v1."""

from __future__ import annotations

from fastapi import APIRouter

from crmsync.mapping_api.entrypoints.errors import ERROR_RESPONSES
from crmsync.mapping_api.entrypoints.routes import (
    account,
    allowance,
    connection,
    contacts,
    deliveries,
    mapping,
    preview,
    push_log,
    push_policy,
    schedule,
    segments,
    sync_runs,
)

API_PREFIX = "/v1"
api_router = APIRouter(prefix=API_PREFIX, responses=ERROR_RESPONSES)
for module in (
    account,
    mapping,
    preview,
    push_policy,
    schedule,
    connection,
    allowance,
    contacts,
    segments,
    sync_runs,
    push_log,
    deliveries,
):
    api_router.include_router(module.router)
