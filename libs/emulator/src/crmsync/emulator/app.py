"""The emulator as an ASGI app: Salesforce's OAuth2, REST, composite and Bulk 2.0 paths, and the control API.

Each API area is a module of routes under `crmsync.emulator.api`; this module
puts them on one Starlette router over one `Emulator` (the orgs and tokens).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware

from crmsync.emulator.api import (
    auth,
    bulk,
    bulk1,
    composite,
    control,
    discovery,
    feeds,
    limits,
    query,
    sobjects,
)
from crmsync.emulator.faults import Fault
from crmsync.emulator.headers import SalesforceHeaders
from crmsync.emulator.state import Emulator, OrgState, Token
from crmsync.emulator.web import PathGuard, http_error, json_response, method_not_allowed, not_found

__all__ = ["Emulator", "Fault", "OrgState", "Token", "build", "create_app", "json_response"]

AREAS = (auth, discovery, limits, sobjects, feeds, query, composite, bulk, bulk1, control)


def _lifespan(*, freeze_heap: bool):
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if freeze_heap:
            # Like the services (crmsync.common.service.tune_collector): the orgs' records live
            # for the process, so full collector passes over them would stall every answer.
            gc.collect()
            gc.freeze()
            gc.set_threshold(20_000, *gc.get_threshold()[1:])
        yield
        app.state.emulator.tokens.clear()

    return lifespan


def create_app(emulator: Emulator, *, freeze_heap: bool = False) -> Starlette:
    """Returns the ASGI app serving an emulator's orgs."""
    app = Starlette(
        routes=[route for area in AREAS for route in area.routes],
        middleware=[Middleware(SalesforceHeaders), Middleware(PathGuard)],
        exception_handlers={404: not_found, 405: method_not_allowed, 500: http_error},
        lifespan=_lifespan(freeze_heap=freeze_heap),
    )
    app.router.redirect_slashes = False
    app.state.emulator = emulator
    return app


def build(*, token_ttl: int = 7200, api_limit: int = 100_000) -> Emulator:
    """Returns an emulator with no orgs yet."""
    return Emulator(token_ttl=token_ttl, api_limit=api_limit)
