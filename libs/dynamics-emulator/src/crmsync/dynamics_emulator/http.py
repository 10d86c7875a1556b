"""One Web API call as the dispatcher sees it, whether it came over HTTP or inside a $batch."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from crmsync.dynamics_emulator.errors import invalid


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # below the service root, without the leading slash: "leads(…)", "$batch"
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: bytes
    root: str  # the service root URL: https://host/api/data/v9.2

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> object:
        try:
            return orjson.loads(self.body or b"null")
        except orjson.JSONDecodeError as exc:
            raise invalid(f"Invalid JSON. {exc}") from None

    def prefers(self) -> dict[str, str]:
        """The Prefer header's preferences: name -> value ("" when it has none)."""
        out: dict[str, str] = {}
        for part in (self.header("prefer") or "").split(","):
            name, _, value = part.strip().partition("=")
            if name:
                out[name.strip().lower()] = value.strip().strip('"')
        return out


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: object, headers: dict[str, str] | None = None) -> Reply:
        out = {"Content-Type": "application/json; odata.metadata=minimal", **(headers or {})}
        return cls(status, orjson.dumps(data), out)
