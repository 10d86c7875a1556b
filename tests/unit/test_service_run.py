"""A service process: a main that fails exits 1, so a bug crashes loudly and the service is restarted."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from crmsync.common import service
from crmsync.common.service import Main, run_app, run_service
from crmsync.common.settings import CommonSettings


@pytest.fixture(autouse=True)
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


async def _run(main: Main, stop: asyncio.Event | None = None, **settings: object) -> int:
    return await run_service(
        name="test", settings=CommonSettings(http_port=0, **settings), main=main, checks={}, stop=stop
    )


@pytest.mark.parametrize("error", [ValueError("a bug"), TimeoutError("a bug's own timeout")], ids=repr)
async def test_a_service_whose_main_ends_with_a_bug_exits_1(error: Exception) -> None:
    async def main(stop: asyncio.Event) -> None:
        raise error

    assert await _run(main) == 1


async def test_a_service_whose_main_stops_when_asked_exits_0() -> None:
    async def main(stop: asyncio.Event) -> None:
        await stop.wait()

    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    assert await _run(main, stop) == 0


async def test_a_main_that_outlives_the_shutdown_timeout_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def main(stop: asyncio.Event) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    assert await _run(main, stop, shutdown_timeout_s=0.2) == 0
    assert cancelled.is_set()


def test_a_service_app_built_and_run_by_run_app_exits_with_its_mains_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configured: list[dict] = []  # the real one would reconfigure logging for the tests after this one
    monkeypatch.setattr(service, "configure_logging", lambda **options: configured.append(options))

    class App:
        settings = CommonSettings(http_port=0, log_json=False)

        async def main(self, stop: asyncio.Event) -> None:
            raise ValueError("a bug")

        def checks(self) -> dict:
            return {}

    assert run_app("test", App) == 1
    assert configured == [{"service": "test", "level": "INFO", "json": False}]
