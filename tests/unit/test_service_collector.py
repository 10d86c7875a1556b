"""A service's garbage collector: what lives for the process is frozen, young passes are rare."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from crmsync.common.service import tune_collector
from crmsync.common.settings import CommonSettings


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_a_service_freezes_what_is_loaded_and_raises_only_the_young_threshold(restored_collector) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    loaded = [[n] for n in range(1000)]  # containers the collector tracks
    tune_collector(young_threshold=CommonSettings().gc_young_threshold)
    assert gc.get_threshold() == (20_000, 10, 10)
    assert gc.get_freeze_count() >= len(loaded)


def test_the_young_threshold_cannot_go_below_pythons_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSYNC_GC_YOUNG_THRESHOLD", "10")
    with pytest.raises(ValueError, match="gc_young_threshold"):
        CommonSettings()
