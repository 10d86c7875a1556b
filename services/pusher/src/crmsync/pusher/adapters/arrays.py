"""`= any(array)` conditions: one bound array, whatever the number of values."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeEngine


def any_of(values: Iterable[Any], item_type: type[TypeEngine[Any]]) -> Any:
    """Returns `= any(array)` for the values.

    `in_()` writes one placeholder per value, so each batch size is a new
    statement for the server to parse and plan.
    """
    return any_(bindparam(None, list(values), type_=ARRAY(item_type())))
