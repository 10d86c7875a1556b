"""Secrets at rest: CRM credentials are stored as Fernet tokens keyed from settings."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    """Encrypts and decrypts small JSON objects (client secrets, refresh tokens, keys)."""

    def __init__(self, secret_key: str) -> None:
        self._fernet = Fernet(_fernet_key(secret_key))

    def seal(self, secrets: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(orjson.dumps(secrets))

    def open(self, token: bytes) -> dict[str, Any]:
        try:
            return orjson.loads(self._fernet.decrypt(token))
        except InvalidToken as exc:
            raise ValueError("stored credentials cannot be decrypted with CRMSYNC_SECRET_KEY") from exc


def _fernet_key(secret_key: str) -> bytes:
    """Accepts a Fernet key as is; derives one from any other passphrase."""
    try:
        if len(base64.urlsafe_b64decode(secret_key.encode())) == 32:
            return secret_key.encode()
    except ValueError:
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest())
