"""What one emulator process holds: the environment, its OAuth client and tokens, its faults."""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import orjson

from crmsync.dynamics_emulator.dataset import Dataset, sizes
from crmsync.dynamics_emulator.faults import Faults
from crmsync.dynamics_emulator.store import Environment


@dataclass(frozen=True)
class Settings:
    leads: int
    contacts: int
    seed: int
    client_id: str
    client_secret: str
    tenant: str
    token_ttl: int = 3599
    name: str = "crmsync-emulated"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


@dataclass
class Emulator:
    settings: Settings
    env: Environment = field(init=False)
    faults: Faults = field(default_factory=Faults)
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry (monotonic)

    def __post_init__(self) -> None:
        self.env = self._environment(first_version=None)

    def _environment(self, first_version: int | None) -> Environment:
        epoch = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        counts = sizes(leads=self.settings.leads, contacts=self.settings.contacts)
        data = Dataset(self.settings.seed, counts, epoch)
        return Environment(data) if first_version is None else Environment(data, first_version=first_version)

    def reset(
        self, *, leads: int | None = None, contacts: int | None = None, seed: int | None = None
    ) -> None:
        """Every record as generated again (from another dataset when given); delta tokens given
        before expire (versions never repeat)."""
        chosen = {"leads": leads, "contacts": contacts, "seed": seed}
        self.settings = replace(self.settings, **{k: v for k, v in chosen.items() if v is not None})
        self.env = self._environment(first_version=self.env.version + 1)
        self.faults.clear()

    def issue_token(self, audience: str) -> str:
        """A JWT-shaped opaque bearer token (clients don't read it; the emulator looks it up)."""
        now = int(time.time())
        claims = {
            "aud": audience, "iss": f"https://sts.windows.net/{self.settings.tenant}/", "iat": now,
            "nbf": now, "exp": now + self.settings.token_ttl, "appid": self.settings.client_id,
            "tid": self.settings.tenant, "oid": str(uuid.uuid4()),
        }  # fmt: skip
        token = f"{_b64({'typ': 'JWT', 'alg': 'RS256'})}.{_b64(claims)}.{secrets.token_urlsafe(32)}"
        self.tokens[token] = time.monotonic() + self.settings.token_ttl
        return token

    def valid_token(self, token: str) -> bool:
        expiry = self.tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def expire_change_tokens(self) -> None:
        self.env.token_floor = self.env.next_version()
