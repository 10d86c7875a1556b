"""ORM rows to the frozen values that cross the ports."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def value_of(cls: type[T], row: Any) -> T:
    """Returns a `cls` (a dataclass) with each field read from the row's attribute of that name."""
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})  # type: ignore[arg-type]
