from __future__ import annotations

import pytest
from pydantic import ValidationError

from crmsync.common.settings import CommonSettings
from crmsync.scheduler.settings import Settings


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


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        # Shorter than Kafka's default 7 days: a redelivered event would be pushed again (R18).
        ("CRMSYNC_RETENTION_PUSH_LOG_DAYS", "7"),
        # Shorter than a weekly schedule's tick: its slot could be emitted twice.
        ("CRMSYNC_RETENTION_SCHEDULED_JOBS_DAYS", "3"),
        ("CRMSYNC_RETENTION_SYNC_RUNS_DAYS", "0"),
        ("CRMSYNC_RETENTION_OUTBOX_HOURS", "0"),
    ],
)
def test_r18_r22_retention_that_would_undo_a_guarantee_is_refused_with_the_settings_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    field = variable.removeprefix("CRMSYNC_").lower()
    with pytest.raises(ValidationError, match=field):
        Settings()


def test_the_retention_floors_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSYNC_RETENTION_PUSH_LOG_DAYS", "8")
    monkeypatch.setenv("CRMSYNC_RETENTION_SCHEDULED_JOBS_DAYS", "8")
    settings = Settings()
    assert (settings.retention_push_log_days, settings.retention_scheduled_jobs_days) == (8, 8)
