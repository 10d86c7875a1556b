from __future__ import annotations

import pytest

from crmsync.common.settings import CommonSettings


def test_plain_postgres_urls_use_asyncpg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db:5432/x")
    assert CommonSettings().database_url == "postgresql+asyncpg://u:p@db:5432/x"


def test_prefixed_names_win_over_bare_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "a:9092")
    monkeypatch.setenv("CRMSYNC_KAFKA_BOOTSTRAP_SERVERS", "b:9092")
    assert CommonSettings().kafka_bootstrap_servers == "b:9092"


def test_production_refuses_the_local_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSYNC_ENVIRONMENT", "production")
    with pytest.raises(ValueError, match="CRMSYNC_SECRET_KEY"):
        CommonSettings()
