"""The emulator's OData $filter: operators on strings, numbers, dates, guids and null, types checked."""

from __future__ import annotations

import pytest

from crmsync.dynamics_emulator.errors import DataverseError
from crmsync.dynamics_emulator.odata_filter import compile_filter
from crmsync.dynamics_emulator.query import resolver
from crmsync.dynamics_emulator.schema import TABLES

LEAD = TABLES["lead"]
GUID = "9c695959-3b5a-4df8-a720-00bd5305472d"
RECORDS = [
    {"leadid": GUID, "lastname": "Smith", "firstname": "Ann", "numberofemployees": 10, "revenue": 99.5,
     "modifiedon": "2026-10-01T12:00:00Z", "donotemail": False, "_parentcontactid_value": None, "statecode": 0},
    {"leadid": "9c695959-3b5a-4df8-a720-00bd5305472e", "lastname": "O'Brien", "firstname": None,
     "numberofemployees": 500, "revenue": None, "modifiedon": "2026-11-01T00:00:00Z", "donotemail": True,
     "_parentcontactid_value": GUID.upper(), "statecode": 1},
]  # fmt: skip


def _match(text: str) -> list[str]:
    predicate = compile_filter(text, resolver(LEAD))
    return [str(r["lastname"]) for r in RECORDS if predicate(r)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lastname eq 'smith'", ["Smith"]),  # case-insensitive as SQL Server
        ("lastname ne 'Smith'", ["O'Brien"]),
        ("lastname eq 'O''Brien'", ["O'Brien"]),
        ("numberofemployees gt 10", ["O'Brien"]),
        ("numberofemployees ge 10 and numberofemployees le 500", ["Smith", "O'Brien"]),
        ("numberofemployees lt 11 or statecode eq 1", ["Smith", "O'Brien"]),
        ("revenue gt 50.25", ["Smith"]),
        ("revenue eq null", ["O'Brien"]),
        ("firstname ne null", ["Smith"]),
        ("modifiedon ge 2026-10-15", ["O'Brien"]),
        ("modifiedon lt 2026-10-01T13:00:00+01:00", []),
        ("modifiedon le 2026-10-01T12:00:00Z", ["Smith"]),
        (f"leadid eq {GUID.upper()}", ["Smith"]),
        (f"_parentcontactid_value eq {GUID}", ["O'Brien"]),
        ("donotemail eq true", ["O'Brien"]),
        ("not (donotemail eq true)", ["Smith"]),
        ("(statecode eq 0 or statecode eq 1) and contains(lastname, 'bri')", ["O'Brien"]),
        ("startswith(lastname, 'sm') or endswith(lastname, 'en')", ["Smith", "O'Brien"]),
        ("firstname gt 'A'", ["Smith"]),  # null is never greater
    ],
)
def test_filters_select_what_dataverse_selects(text: str, expected: list[str]) -> None:
    assert _match(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nosuch eq 1", "Could not find a property named 'nosuch'"),
        ("lastname eq 1", "incompatible types"),
        ("numberofemployees eq 'ten'", "incompatible types"),
        ("lastname eq", "Syntax error"),
        ("lastname eq 'a' and", "Syntax error"),
        ("lastname eq 'unterminated", "Syntax error"),
        ("(lastname eq 'a'", "Syntax error"),
        ("contains(numberofemployees, 'a')", "No function signature"),
    ],
)
def test_bad_filters_are_refused_with_a_400(text: str, message: str) -> None:
    with pytest.raises(DataverseError) as raised:
        compile_filter(text, resolver(LEAD))
    assert raised.value.status == 400 and raised.value.code == "0x80060888"
    assert message in raised.value.message
