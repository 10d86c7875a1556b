"""SOQL's relative date literals: the days each one means, parsed, and evaluated over records."""

from __future__ import annotations

import datetime as dt

import pytest

from crmsync.emulator.clock import now_ms
from crmsync.emulator.dateliterals import date_range
from crmsync.emulator.soql import Literal, parse
from crmsync.emulator.store import ApiError, Org
from tests.support.emulator_orgs import in_process_org

WEDNESDAY = dt.date(2026, 12, 2)
D = dt.date


@pytest.mark.parametrize(
    ("name", "n", "start", "end"),
    [
        ("TODAY", None, D(2026, 12, 2), D(2026, 12, 3)),
        ("YESTERDAY", None, D(2026, 12, 1), D(2026, 12, 2)),
        ("TOMORROW", None, D(2026, 12, 3), D(2026, 12, 4)),
        ("THIS_WEEK", None, D(2026, 11, 29), D(2026, 12, 6)),  # weeks start on Sunday
        ("LAST_WEEK", None, D(2026, 11, 22), D(2026, 11, 29)),
        ("NEXT_WEEK", None, D(2026, 12, 6), D(2026, 12, 13)),
        ("THIS_MONTH", None, D(2026, 12, 1), D(2027, 1, 1)),
        ("LAST_MONTH", None, D(2026, 11, 1), D(2026, 12, 1)),
        ("NEXT_MONTH", None, D(2027, 1, 1), D(2027, 2, 1)),
        ("THIS_QUARTER", None, D(2026, 10, 1), D(2027, 1, 1)),
        ("LAST_QUARTER", None, D(2026, 7, 1), D(2026, 10, 1)),
        ("NEXT_QUARTER", None, D(2027, 1, 1), D(2027, 4, 1)),
        ("THIS_YEAR", None, D(2026, 1, 1), D(2027, 1, 1)),
        ("LAST_YEAR", None, D(2025, 1, 1), D(2026, 1, 1)),
        ("NEXT_YEAR", None, D(2027, 1, 1), D(2028, 1, 1)),
        ("LAST_90_DAYS", None, D(2026, 9, 3), D(2026, 12, 3)),
        ("NEXT_90_DAYS", None, D(2026, 12, 3), D(2027, 3, 3)),
        ("LAST_N_DAYS", 7, D(2026, 11, 25), D(2026, 12, 3)),  # today counts in
        ("NEXT_N_DAYS", 3, D(2026, 12, 3), D(2026, 12, 6)),  # today does not
        ("N_DAYS_AGO", 2, D(2026, 11, 30), D(2026, 12, 1)),
        ("LAST_N_WEEKS", 2, D(2026, 11, 15), D(2026, 11, 29)),
        ("NEXT_N_WEEKS", 2, D(2026, 12, 6), D(2026, 12, 20)),
        ("N_WEEKS_AGO", 1, D(2026, 11, 22), D(2026, 11, 29)),
        ("LAST_N_MONTHS", 2, D(2026, 10, 1), D(2026, 12, 1)),
        ("NEXT_N_MONTHS", 2, D(2027, 1, 1), D(2027, 3, 1)),
        ("N_MONTHS_AGO", 13, D(2025, 11, 1), D(2025, 12, 1)),
        ("LAST_N_QUARTERS", 2, D(2026, 4, 1), D(2026, 10, 1)),
        ("NEXT_N_QUARTERS", 1, D(2027, 1, 1), D(2027, 4, 1)),
        ("N_QUARTERS_AGO", 4, D(2025, 10, 1), D(2026, 1, 1)),
        ("LAST_N_YEARS", 2, D(2024, 1, 1), D(2026, 1, 1)),
        ("NEXT_N_YEARS", 1, D(2027, 1, 1), D(2028, 1, 1)),
        ("N_YEARS_AGO", 1, D(2025, 1, 1), D(2026, 1, 1)),
    ],
)
def test_date_literal_ranges(name: str, n: int | None, start: dt.date, end: dt.date):
    assert date_range(name, n, WEDNESDAY) == (start, end)


def test_date_literal_week_of_a_sunday_starts_that_day():
    assert date_range("THIS_WEEK", None, D(2026, 11, 29)) == (D(2026, 11, 29), D(2026, 12, 6))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("CreatedDate = TODAY", ("TODAY", None)),
        ("CreatedDate > last_month", ("LAST_MONTH", None)),
        ("CreatedDate = LAST_N_DAYS:30", ("LAST_N_DAYS", 30)),
        ("CreatedDate = n_days_ago : 3", ("N_DAYS_AGO", 3)),
    ],
)
def test_date_literals_parse(text: str, value: tuple[str, int | None]):
    assert parse(f"SELECT Id FROM Lead WHERE {text}").where.value == Literal("dateliteral", value)


def _org() -> Org:
    return in_process_org(leads=0, contacts=30, seed=3)


def _ids(org: Org, query: str) -> set[str]:
    cursor, _ = org.run_query(query, include_deleted=False, version="60.0")
    return {record["Id"] for record in cursor.render_page(list(cursor.rows))}


def test_date_literals_select_records_by_date_time():
    org = _org()
    day = 86_400_000
    midnight = now_ms() // day * day
    made = {}
    for name, stamp in (("today", midnight + 1), ("yesterday", midnight - 1), ("week", midnight - 6 * day)):
        table, row = org.create("Lead", {"LastName": name, "Company": "Acme"}, system=True, stamp=stamp)
        made[name] = table.id_of(row)
    assert _ids(org, "SELECT Id FROM Lead WHERE CreatedDate = TODAY") == {made["today"]}
    assert _ids(org, "SELECT Id FROM Lead WHERE CreatedDate = YESTERDAY") == {made["yesterday"]}
    assert _ids(org, "SELECT Id FROM Lead WHERE CreatedDate < TODAY") == {made["yesterday"], made["week"]}
    assert _ids(org, "SELECT Id FROM Lead WHERE CreatedDate = LAST_N_DAYS:1") == {
        made["today"],
        made["yesterday"],
    }
    assert _ids(org, "SELECT Id FROM Lead WHERE CreatedDate >= LAST_N_DAYS:7") == set(made.values())
    assert _ids(org, "SELECT Id FROM Lead WHERE CreatedDate IN (TODAY, N_DAYS_AGO:6)") == {
        made["today"],
        made["week"],
    }
    assert _ids(org, "SELECT Id FROM Lead WHERE CreatedDate != TODAY AND LastName != null") == {
        made["yesterday"],
        made["week"],
    }


def test_date_literals_select_records_by_date():
    org = _org()
    today = dt.datetime.fromtimestamp(now_ms() / 1000, dt.UTC).date()
    table = org.tables["Opportunity"]
    offsets = [-1, 0, 1, 10, 30, 31]
    for row, offset in enumerate(offsets):
        close = (today + dt.timedelta(days=offset)).isoformat()
        org.update("Opportunity", table.id_of(row), {"CloseDate": close}, system=True)
    found = _ids(org, "SELECT Id FROM Opportunity WHERE CloseDate = NEXT_N_DAYS:30 OR CloseDate = TODAY")
    assert found == {table.id_of(row) for row, offset in enumerate(offsets) if 0 <= offset <= 30}
    assert _ids(org, "SELECT Id FROM Opportunity WHERE CloseDate < TODAY") == {table.id_of(0)}


def test_date_literals_refused_on_fields_that_hold_no_dates():
    with pytest.raises(ApiError) as refused:
        _ids(_org(), "SELECT Id FROM Lead WHERE Email = TODAY")
    assert refused.value.error_code == "INVALID_FIELD"
