"""The HTTP app: routes, error bodies, metrics and health over the services `bootstrap` wired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from crmsync.common.service import health_routes
from crmsync.mapping_api.console.app import mount_console
from crmsync.mapping_api.entrypoints import errors, metrics
from crmsync.mapping_api.entrypoints.routes import api_router

if TYPE_CHECKING:
    from crmsync.mapping_api.bootstrap import Services

DESCRIPTION = """
Configuration of crmsync for one account (tenant): the CRM connection, the field
mapping, the push policy and the sync schedule; Sync Now; the CRM's entities;
contacts and segments; sync-run history and the push log.

Every call needs `Authorization: Bearer <key>` with a key from
`crmsync-admin key create`. Everything is scoped to the key's account (R21);
reader keys read, admin keys also write. Errors are JSON bodies that name the
offending field (R22).
"""


def create_app(services: Services) -> FastAPI:
    """Returns the app; the Kafka producer and outbox relay run while it is started."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with services.running():
            yield

    app = FastAPI(title="crmsync mapping API", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    errors.install(app)
    metrics.install(app)
    app.include_router(api_router)
    app.router.routes.extend(health_routes(service="mapping-api", checks=services.checks()))
    mount_console(app, services)
    app.state.services = services
    return app
