"""`$batch` bodies: operations in multipart/mixed, each in its own change set, and the answers read back.

Each operation gets its own change set so it succeeds or fails alone (the
interface's writes are not all-or-nothing); `Prefer: odata.continue-on-error`
keeps the batch going past a refused one. A refused change set is answered
by the failed operation alone, so answers are matched to operations by
position, top-level part by part.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

MAX_OPERATIONS = 1000  # Dataverse's limit per $batch
CRLF = "\r\n"
_BOUNDARY = re.compile(r'boundary="?([^";,\s]+)"?', re.IGNORECASE)


@dataclass(frozen=True)
class Operation:
    method: str
    url: str  # absolute, or relative to the Web API root
    body: dict[str, Any] | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Answer:
    """One operation's answer inside a batch answer."""

    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        try:
            return orjson.loads(self.body) if self.body.strip() else None
        except orjson.JSONDecodeError:
            return None


def encode(operations: list[Operation]) -> tuple[str, bytes]:
    """Returns the Content-Type and the body of a batch of these operations."""
    if len(operations) > MAX_OPERATIONS:
        raise ValueError(f"a $batch holds at most {MAX_OPERATIONS} operations")
    batch = f"batch_{uuid.uuid4()}"
    lines: list[str] = []
    for number, op in enumerate(operations, start=1):
        change_set = f"changeset_{uuid.uuid4()}"
        lines += [f"--{batch}", f"Content-Type: multipart/mixed; boundary={change_set}", ""]
        lines += [
            f"--{change_set}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {number}",
            "",
            f"{op.method} {op.url} HTTP/1.1",
        ]
        lines += [f"{name}: {value}" for name, value in op.headers]
        if op.body is not None:
            lines += ["Content-Type: application/json; type=entry", "", orjson.dumps(op.body).decode()]
        else:
            lines += [""]
        lines += [f"--{change_set}--"]
    lines += [f"--{batch}--", ""]
    return f"multipart/mixed; boundary={batch}", CRLF.join(lines).encode()


def boundary_of(content_type: str | None) -> str | None:
    match = _BOUNDARY.search(content_type or "")
    return match[1] if match else None


def _parts(text: str, boundary: str) -> list[str]:
    """Returns the parts between the boundary lines of a multipart body."""
    parts: list[str] = []
    current: list[str] | None = None
    for line in text.split("\n"):
        marker = line.rstrip("\r").strip()
        if marker in (f"--{boundary}", f"--{boundary}--"):
            if current is not None:
                parts.append("\n".join(current))
            current = None if marker.endswith("--") else []
        elif current is not None:
            current.append(line.rstrip("\r"))
    return parts


def _split_head(raw: str) -> tuple[dict[str, str], str]:
    head, _, rest = raw.lstrip("\n").partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _answer(http_part: str) -> Answer:
    status_line, _, rest = http_part.lstrip("\n").partition("\n")
    fields = status_line.split(" ", 2)
    status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 500
    headers, body = _split_head(rest if "\n\n" in rest or rest.startswith("\n") else rest + "\n\n")
    return Answer(status, headers, body.strip().encode())


def decode(content_type: str | None, body: bytes) -> list[Answer]:
    """Returns the answers of a batch, one per top-level part (a change set's first answer for a set)."""
    boundary = boundary_of(content_type)
    if boundary is None:
        raise ValueError(f"a batch answer without a multipart boundary ({content_type!r})")
    answers: list[Answer] = []
    for part in _parts(body.decode("utf-8", "replace"), boundary):
        headers, rest = _split_head(part)
        inner = (
            boundary_of(headers.get("content-type"))
            if "multipart" in headers.get("content-type", "")
            else None
        )
        if inner is not None:
            nested = [_split_head(p)[1] for p in _parts(rest, inner)]
            answers.append(_answer(nested[0]) if nested else Answer(500, {}, b""))
        else:
            answers.append(_answer(rest))
    return answers
