"""Whether a value fits a contact field: its data type, and the CRM field's length (pure; R22).

Checked where a value arrives, so a value that could never be stored or sent
is refused there, naming the field and the type, instead of failing at the
CRM later, far from whoever sent it. A null always fits: it clears the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from crmsync.common.domain.fields import STANDARD_FIELDS_BY_KEY, DataType
from crmsync.common.domain.mapping import Mapping

_NUMBER_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_BOOLEAN_TEXT = frozenset({"true", "false"})
_DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EMAIL_MAX = 320


@dataclass(frozen=True)
class ValueProblem:
    """A value that does not fit its field."""

    field: str
    data_type: DataType
    message: str

    def __str__(self) -> str:
        return f"{self.field} ({self.data_type.value}): {self.message}"


def looks_like_email(value: str) -> bool:
    """Returns whether the text has the shape of an e-mail address: something@domain.tld, no spaces."""
    local, at, domain = value.partition("@")
    return bool(at and local and "." in domain and " " not in value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _number_problem(value: Any) -> str | None:
    if isinstance(value, bool):
        return f"expected a number, got {_shown(value)}"
    if isinstance(value, int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"expected a finite number, got {_shown(value)}"
    if isinstance(value, str) and _NUMBER_TEXT.match(value.strip()):
        return None
    return f"expected a number, got {_shown(value)}"


def _boolean_problem(value: Any) -> str | None:
    if isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in _BOOLEAN_TEXT):
        return None
    return f"expected true or false, got {_shown(value)}"


def _date_problem(value: Any) -> str | None:
    if isinstance(value, str) and _DATE_TEXT.match(value):
        try:
            date.fromisoformat(value)
            return None
        except ValueError:
            pass
    return f"expected a date as YYYY-MM-DD, got {_shown(value)}"


def _datetime_problem(value: Any) -> str | None:
    if isinstance(value, str) and len(value) >= 10:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            return None
        except ValueError:
            pass
    return f"expected an ISO 8601 date and time, got {_shown(value)}"


def _email_problem(value: Any) -> str | None:
    if isinstance(value, str) and len(value.strip()) <= _EMAIL_MAX and looks_like_email(value.strip()):
        return None
    return f"expected an e-mail address, got {_shown(value)}"


def _text_problem(value: Any) -> str | None:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return None
    return f"expected text, got {_shown(value)}"


def _multi_text_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return None
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return None
    return f"expected a list of texts, got {_shown(value)}"


_CHECKS = {
    DataType.NUMBER: _number_problem,
    DataType.SCORE: _number_problem,
    DataType.BOOLEAN: _boolean_problem,
    DataType.DATE: _date_problem,
    DataType.DATETIME: _datetime_problem,
    DataType.EMAIL: _email_problem,
    DataType.TEXT: _text_problem,
    DataType.MULTI_TEXT: _multi_text_problem,
}


def type_problem(data_type: DataType, value: Any) -> str | None:
    """Returns why the value does not fit the data type, or None when it does."""
    if value is None:
        return None
    return _CHECKS[data_type](value)


def field_data_type(mapping: Mapping, name: str) -> DataType | None:
    """Returns the data type of a contact field: its mapping row's, else the standard catalogue's."""
    row = mapping.row(name)
    if row is not None:
        return row.data_type
    standard = STANDARD_FIELDS_BY_KEY.get(name)
    return standard.data_type if standard is not None else None


def change_problems(mapping: Mapping, changes: AnyMapping[str, Any]) -> list[ValueProblem]:
    """Returns the changed values that do not fit their fields' data types, in the changes' order.

    A field of no known type (neither mapped nor standard) is not judged here:
    whether it may be written at all is the push decision's to say.
    """
    problems = []
    for name, value in changes.items():
        data_type = field_data_type(mapping, name)
        if data_type is None:
            continue
        message = type_problem(data_type, value)
        if message is not None:
            problems.append(ValueProblem(name, data_type, message))
    return problems


def crm_length(value: Any) -> int:
    """Returns the length the CRM measures: characters of the text it receives."""
    if isinstance(value, list | tuple):
        return len(";".join(str(v) for v in value))
    return len(str(value))


def too_long(
    values: AnyMapping[str, Any], lengths: AnyMapping[str, int | None]
) -> Iterable[tuple[str, int, int]]:
    """Yields (CRM field, its length limit, the value's length) for each value longer than its field holds.

    `lengths` gives each CRM field's limit from the describe; a field without
    one (numbers, booleans, dates) is never too long.
    """
    for name, value in values.items():
        limit = lengths.get(name)
        if value is None or not limit or isinstance(value, bool | int | float):
            continue
        length = crm_length(value)
        if length > limit:
            yield name, limit, length
