"""The console's session: the API key and a CSRF token sealed into one expiring cookie.

The cookie is encrypted and authenticated (Fernet, keyed from the service's secret
key for this purpose alone), so the browser can neither read the key nor forge a
session. Every request re-authenticates the key, so a revoked key ends its sessions.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from crmsync.common.crypto import SecretBox

COOKIE = "crmsync_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL = timedelta(hours=8)


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in browser: the key it signed in with, its CSRF token, when it expires."""

    api_key: str
    csrf_token: str
    expires_at: datetime

    def csrf_ok(self, sent: str | None) -> bool:
        """Whether a submitted token is this session's (compared in constant time)."""
        return bool(sent) and hmac.compare_digest(sent.encode(), self.csrf_token.encode())


class SessionCodec:
    """Seals sessions into cookie values and opens them; a tampered or expired one opens as None."""

    def __init__(self, secret_key: str, *, ttl: timedelta = SESSION_TTL) -> None:
        # A key of its own: a cookie can never be opened as a stored CRM secret, nor the reverse.
        self._box = SecretBox(f"{secret_key}:console-session")
        self.ttl = ttl

    def new(self, api_key: str, *, now: datetime) -> ConsoleSession:
        return ConsoleSession(api_key, secrets.token_urlsafe(32), now + self.ttl)

    def seal(self, session: ConsoleSession) -> str:
        payload = {"k": session.api_key, "c": session.csrf_token, "e": session.expires_at.timestamp()}
        return self._box.seal(payload).decode()

    def open(self, value: str | None, *, now: datetime) -> ConsoleSession | None:
        if not value:
            return None
        try:
            payload = self._box.open(value.encode())
            session = ConsoleSession(
                str(payload["k"]), str(payload["c"]), datetime.fromtimestamp(float(payload["e"]), now.tzinfo)
            )
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires_at > now else None
