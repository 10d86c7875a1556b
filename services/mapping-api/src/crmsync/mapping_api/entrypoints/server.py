"""The mapping API's process: serves the app until SIGTERM."""

from __future__ import annotations

import asyncio

from crmsync.common.observability.logging import configure_logging
from crmsync.common.service import run_service
from crmsync.mapping_api.bootstrap import bootstrap


async def serve() -> int:
    """Returns the exit code once the API has stopped."""
    app = bootstrap()
    settings = app.state.services.settings
    configure_logging(service="mapping-api", level=settings.log_level, json=settings.log_json)

    async def main(stop: asyncio.Event) -> None:
        # The API and its outbox relay live in the app's lifespan; this only waits for the stop signal.
        await stop.wait()

    return await run_service(name="mapping-api", settings=settings, main=main, checks={}, app=app)


def main() -> None:
    raise SystemExit(asyncio.run(serve()))
