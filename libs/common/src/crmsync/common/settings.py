"""Settings shared by every service, read from the environment (prefix CRMSYNC_).

Built once in each service's bootstrap and passed down; nothing reads the
environment at import time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TOPIC_PREFIX = "crmsync."
DEFAULT_DATABASE_URL = "postgresql+asyncpg://crmsync:crmsync@127.0.0.1:5432/crmsync"
# Used only when CRMSYNC_ENVIRONMENT=local; any other environment must set its own.
LOCAL_SECRET_KEY = "local-development-only-secret-key-change-me"


def _env(name: str) -> AliasChoices:
    """Accept CRMSYNC_<NAME> and, for the well-known ones, the bare <NAME>."""
    return AliasChoices(f"CRMSYNC_{name}", name)


class CommonSettings(BaseSettings):
    """What every crmsync process needs: where Postgres and Kafka are, topics, logging."""

    model_config = SettingsConfigDict(env_prefix="CRMSYNC_", extra="ignore", populate_by_name=True)

    environment: Literal["local", "test", "production"] = "local"
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        validation_alias=_env("DATABASE_URL"),
        description="PostgreSQL URL; a plain postgresql:// URL is used with asyncpg.",
    )
    database_pool_size: int = Field(10, ge=1)
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"))
    kafka_client_id: str = "crmsync"
    topic_prefix: str = Field(
        DEFAULT_TOPIC_PREFIX,
        description="Prefix of every topic name (and, when not the default, of consumer groups); tests use a unique one.",
    )
    topic_partitions: int = Field(12, ge=1)
    topic_replication_factor: int = Field(1, ge=1)
    log_level: str = "INFO"
    log_json: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics.")
    shutdown_timeout_s: float = Field(8.0, gt=0)
    gc_young_threshold: int = Field(
        20_000,
        ge=700,
        description=(
            "Allocations between the garbage collector's young passes (Python's default is 700). "
            "Higher, a batch's short-lived objects are mostly freed before a pass sees them, so "
            "fewer reach the old generation and its slow full passes come rarely."
        ),
    )
    secret_key: SecretStr = Field(
        SecretStr(LOCAL_SECRET_KEY),
        description="Key that encrypts CRM credentials at rest (Fernet key or any passphrase).",
    )

    @field_validator("database_url")
    @classmethod
    def _use_asyncpg(cls, url: str) -> str:
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url[len(plain) :]
        return url

    def model_post_init(self, __context: object) -> None:
        if self.environment == "production" and self.secret_key.get_secret_value() == LOCAL_SECRET_KEY:
            raise ValueError("CRMSYNC_SECRET_KEY must be set outside local development")

    def topic(self, name: str) -> str:
        """Returns the full topic name for a design topic name such as 'sync-jobs'."""
        return f"{self.topic_prefix}{name}"
