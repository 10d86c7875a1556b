"""The pusher's composition root: what it builds, and what it leaves to the caller."""

from __future__ import annotations

from crmsync.common.db.session import create_engine
from crmsync.pusher.bootstrap import bootstrap
from crmsync.pusher.settings import Settings


async def test_an_engine_passed_in_is_the_callers_and_one_built_is_the_apps() -> None:
    settings = Settings()
    engine = create_engine(settings)
    try:
        assert not bootstrap(settings, engine=engine).owns_engine
        built = bootstrap(settings)
        assert built.owns_engine and built.engine is not engine
        await built.engine.dispose()
    finally:
        await engine.dispose()
