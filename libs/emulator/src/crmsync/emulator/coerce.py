"""A write's values checked and turned into their stored form, with Salesforce's errors for each field."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from crmsync.emulator import ids, soql
from crmsync.emulator.clock import parse_datetime
from crmsync.emulator.errors import ApiError, RecordError, RecordRejected
from crmsync.emulator.schema import NUMBER_TYPES, FieldDef
from crmsync.emulator.table import Table

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
Tables = dict[str, Table]


def _wrong_type(f: FieldDef, value: Any) -> RecordRejected:
    return RecordRejected(
        RecordError(
            "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{f.name}: value not of required type: {value}", (f.name,)
        )
    )


def _reference(tables: Tables, f: FieldDef, value: Any) -> int:
    label = f.name
    if not isinstance(value, str) or ids.normalize(value) is None:
        raise RecordRejected(
            RecordError("MALFORMED_ID", f"{label}: id value of incorrect type: {value}", (label,))
        )
    target = tables[f.reference_to[0]]
    row = target.row_of(value)
    if row is None or not target.alive(row):
        raise RecordRejected(
            RecordError("INVALID_CROSS_REFERENCE_KEY", f"{label}: invalid cross reference id", (label,))
        )
    return row


def _boolean(tables: Tables, f: FieldDef, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _wrong_type(f, value)
    return value


def _number(tables: Tables, f: FieldDef, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _wrong_type(f, value)
    try:
        number = float(value)
    except ValueError:
        raise _wrong_type(f, value) from None
    return int(number) if f.type == "int" else number


def _date(tables: Tables, f: FieldDef, value: Any) -> str:
    try:
        datetime.strptime(str(value)[:10], "%Y-%m-%d")
    except ValueError:
        raise _wrong_type(f, value) from None
    return str(value)[:10]


def _datetime(tables: Tables, f: FieldDef, value: Any) -> int:
    try:
        return parse_datetime(str(value))
    except soql.SoqlError:
        raise _wrong_type(f, value) from None


def _text(tables: Tables, f: FieldDef, value: Any) -> str | None:
    label = f.name
    if not isinstance(value, str):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong_type(f, value)
        value = str(value)
    if f.length and len(value) > f.length:
        raise RecordRejected(
            RecordError(
                "STRING_TOO_LONG",
                f"{f.label or label}: data value too large: {value[:40]} (max length={f.length})",
                (label,),
            )
        )
    if f.type == "email" and value and not _EMAIL.match(value):
        raise RecordRejected(
            RecordError("INVALID_EMAIL_ADDRESS", f"Email: invalid email address: {value}", (label,))
        )
    return value if value != "" else None


_BY_TYPE: dict[str, Callable[[Tables, FieldDef, Any], Any]] = {
    "reference": _reference,
    "boolean": _boolean,
    "date": _date,
    "datetime": _datetime,
    **{t: _number for t in NUMBER_TYPES},
}


def coerce(tables: Tables, f: FieldDef, value: Any) -> Any:
    """Returns a written value in its stored form, or raises RecordRejected as Salesforce would."""
    if value is None:
        if not f.nillable or f.required:
            if f.type == "boolean":
                return False
            raise RecordRejected(
                RecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{f.name}]", (f.name,))
            )
        return None
    return _BY_TYPE.get(f.type, _text)(tables, f, value)


def _not_writable(f: FieldDef) -> RecordError:
    return RecordError(
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        f"Unable to create/update fields: {f.name}. Please check the security settings of this field "
        "and verify that it is read/write for your profile or permission set.",
        (f.name,),
    )


def prepare(
    tables: Tables, table: Table, fields: dict[str, Any], *, creating: bool, system: bool
) -> dict[str, Any]:
    """Returns validated stored values, or raises RecordRejected with every problem found."""
    errors: list[RecordError] = []
    values: dict[str, Any] = {}
    for key, value in fields.items():
        lowered = key.lower()  # Salesforce reads field names in any case
        if lowered == "attributes" or (lowered == "id" and not creating):
            continue
        f = table.obj.field(key)
        if f is None:
            raise ApiError(
                400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {table.obj.name}"
            )
        allowed = f.createable if creating else f.updateable
        if not allowed and not (system and not Table.computed(f)):
            errors.append(_not_writable(f))
            continue
        try:
            values[f.name] = coerce(tables, f, value)
        except RecordRejected as exc:
            errors.extend(exc.errors)
    if creating:
        missing = [f.name for f in table.obj.fields.values() if f.required and values.get(f.name) is None]
        if missing:
            errors.append(
                RecordError(
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{', '.join(missing)}]",
                    tuple(missing),
                )
            )
    if errors:
        raise RecordRejected(*errors)
    return values
