"""What every store shares: the session it works in, and ORM rows turned into frozen values."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


class SessionStore:
    """A store over the session of the transaction it belongs to; it never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session


def value_of(cls: type[T], row: Any) -> T:
    """Returns a `cls` (a dataclass) with each field read from the row's attribute of that name."""
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})  # type: ignore[arg-type]
