"""Turning Salesforce's JSON and CSV values into Python values, the same way for both.

REST answers with JSON (numbers, booleans, ISO strings); Bulk API 2.0 answers with
CSV (everything a string, null as an empty cell). Both go through the same
converters, chosen from the object's describe, so a record looks the same
whichever road it took:

- boolean → bool; int → int; double, currency, percent → float;
- date → datetime.date; datetime → timezone-aware datetime in UTC;
- everything else (string, email, picklist, id, reference, time…) → str;
- empty or null → None; a relationship (`Account.Name`) → nested dict
  `{"Account": {"Name": ...}}`, or None when every selected field of it is empty.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

Converter = Callable[[Any], Any]
# A plan maps each selected key to its converter (None: keep as is) or, for a
# relationship, to the plan of the parent object's selected fields.
Plan = dict[str, "Converter | Plan | None"]


_BOOLEANS = {"true": True, "false": False, "": None}


def _to_bool(value: Any) -> bool | None:
    if value is True or value is False:
        return value
    found = _BOOLEANS.get(value, value)
    return found if found is not value else str(value).lower() == "true"


def _to_int(value: Any) -> int | None:
    if value == "":
        return None
    return int(float(value)) if isinstance(value, str) and "." in value else int(value)


def _to_float(value: Any) -> float | None:
    if value == "":
        return None
    return float(value)


def _to_date(value: Any) -> date | None:
    if value == "":
        return None
    return date.fromisoformat(value[:10])


def _to_datetime(value: Any) -> datetime | None:
    if value == "":
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


CONVERTERS: dict[str, Converter] = {
    "boolean": _to_bool,
    "int": _to_int,
    "long": _to_int,
    "double": _to_float,
    "currency": _to_float,
    "percent": _to_float,
    "date": _to_date,
    "datetime": _to_datetime,
}


def converter_for(salesforce_type: str) -> Converter | None:
    """Returns the converter of a describe type, or None where the string is kept."""
    return CONVERTERS.get(salesforce_type)


def to_salesforce(value: Any) -> Any:
    """Returns a value as Salesforce's JSON expects it (dates and datetimes as ISO text)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def shape_rest(record: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Returns the REST query record, changed in place: `attributes` dropped, values converted.

    The plan names every selected field, relationships included, so only its
    typed and relationship entries need visiting.
    """
    record.pop("attributes", None)
    for key, step in plan.items():
        if step is None:
            continue
        value = record.get(key)
        if value is None:
            continue
        if isinstance(step, dict):
            if isinstance(value, dict):
                nested = shape_rest(value, step)
                record[key] = nested if any(v is not None for v in nested.values()) else None
        else:
            record[key] = step(value)
    return record


class CsvRows:
    """Splits a CSV body arriving in arbitrary text chunks into complete rows.

    A row ends at a newline outside quotes: a newline is such a boundary exactly
    when the number of quote characters before it is even.
    """

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, text: str) -> list[list[str]]:
        """Returns the rows completed by this chunk."""
        self._buffer += text
        cut = _last_row_end(self._buffer)
        if cut == 0:
            return []
        ready, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return _parse(ready)

    def close(self) -> list[list[str]]:
        """Returns the last row when the body did not end with a newline."""
        rest, self._buffer = self._buffer, ""
        return _parse(rest)


def _parse(text: str) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(text)) if row]


def _last_row_end(buffer: str) -> int:
    index = buffer.rfind("\n")
    if index < 0:
        return 0
    quotes = buffer.count('"', 0, index)
    while quotes % 2:
        previous = buffer.rfind("\n", 0, index)
        if previous < 0:
            return 0
        quotes -= buffer.count('"', previous, index)
        index = previous
    return index + 1


class CsvShaper:
    """Builds records from Bulk CSV rows under one header, values converted as for REST."""

    def __init__(self, header: list[str], plan: Plan) -> None:
        self._keys = list(header)
        self._typed: list[tuple[str, Converter]] = []
        self._nested: list[tuple[str, tuple[str, ...]]] = []
        self._relationships: set[str] = set()
        for column in header:
            path = tuple(column.split("."))
            step: Any = plan
            for part in path:
                step = step.get(part) if isinstance(step, dict) else None
            if callable(step):
                self._typed.append((column, step))
            if len(path) > 1:
                self._nested.append((column, path))
                self._relationships.add(path[0])

    def shape(self, row: list[str]) -> dict[str, Any]:
        """Returns the record of one CSV row."""
        record: dict[str, Any] = {key: cell or None for key, cell in zip(self._keys, row, strict=False)}
        for key, convert in self._typed:
            value = record[key]
            if value is not None:
                record[key] = convert(value)
        if self._nested:
            for column, path in self._nested:
                value = record.pop(column)
                target = record
                for part in path[:-1]:
                    node = target.get(part)
                    if not isinstance(node, dict):
                        node = target[part] = {}
                    target = node
                target[path[-1]] = value
            for name in self._relationships:
                if not _any_value(record.get(name)):
                    record[name] = None
        return record


def _any_value(node: Any) -> bool:
    if isinstance(node, dict):
        return any(_any_value(v) for v in node.values())
    return node is not None
