"""`python -m crmsync.scheduler` / `crmsync-scheduler`: runs the scheduler until SIGTERM."""

from __future__ import annotations

import asyncio

from crmsync.common.observability.logging import configure_logging
from crmsync.common.service import run_service
from crmsync.scheduler.bootstrap import bootstrap


async def _run() -> int:
    app = bootstrap()
    configure_logging(service="scheduler", level=app.settings.log_level, json=app.settings.log_json)
    return await run_service(name="scheduler", settings=app.settings, main=app.main, checks=app.checks())


def main() -> None:
    raise SystemExit(asyncio.run(_run()))


if __name__ == "__main__":
    main()
