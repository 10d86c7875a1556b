"""SOQL's relative date literals (TODAY, LAST_N_DAYS:n, THIS_QUARTER, …) as ranges of days (pure).

Each literal means the days from `start` (included) to `end` (excluded), in UTC
(the emulator's org runs in UTC, weeks start on Sunday as in the en_US locale):
`= LITERAL` is within the range, `<` before its start, `<=` before its end,
`>` from its end on, `>=` from its start on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Range = tuple[dt.date, dt.date]

# Literals that take no number.
FIXED = frozenset(
    {
        "YESTERDAY", "TODAY", "TOMORROW",
        "LAST_WEEK", "THIS_WEEK", "NEXT_WEEK",
        "LAST_MONTH", "THIS_MONTH", "NEXT_MONTH",
        "LAST_90_DAYS", "NEXT_90_DAYS",
        "LAST_QUARTER", "THIS_QUARTER", "NEXT_QUARTER",
        "LAST_YEAR", "THIS_YEAR", "NEXT_YEAR",
    }
)  # fmt: skip
# Literals written NAME:n.
COUNTED = frozenset(
    {
        f"{kind}_{unit}"
        for unit in ("DAYS", "WEEKS", "MONTHS", "QUARTERS", "YEARS")
        for kind in ("LAST_N", "NEXT_N")
    }
    | {f"N_{unit}_AGO" for unit in ("DAYS", "WEEKS", "MONTHS", "QUARTERS", "YEARS")}
)


def _add_months(day: dt.date, months: int) -> dt.date:
    total = day.year * 12 + day.month - 1 + months
    return dt.date(total // 12, total % 12 + 1, 1)


def _period_start(unit: str, today: dt.date) -> dt.date:
    if unit == "DAYS":
        return today
    if unit == "WEEKS":
        return today - dt.timedelta(days=(today.weekday() + 1) % 7)  # back to Sunday
    if unit == "MONTHS":
        return today.replace(day=1)
    if unit == "QUARTERS":
        return dt.date(today.year, (today.month - 1) // 3 * 3 + 1, 1)
    return dt.date(today.year, 1, 1)


def _shift(unit: str) -> Callable[[dt.date, int], dt.date]:
    """Returns (start of a period, n) → the start of the period n periods later."""
    if unit == "DAYS":
        return lambda day, n: day + dt.timedelta(days=n)
    if unit == "WEEKS":
        return lambda day, n: day + dt.timedelta(weeks=n)
    months = {"MONTHS": 1, "QUARTERS": 3, "YEARS": 12}[unit]
    return lambda day, n: _add_months(day, n * months)


def date_range(name: str, n: int | None, today: dt.date) -> Range:
    """Returns the [start, end) days a date literal means on `today` (n: the number of NAME:n)."""
    name = name.upper()
    if name in ("YESTERDAY", "TODAY", "TOMORROW"):
        offset = {"YESTERDAY": -1, "TODAY": 0, "TOMORROW": 1}[name]
        return today + dt.timedelta(days=offset), today + dt.timedelta(days=offset + 1)
    if name in ("LAST_90_DAYS", "NEXT_90_DAYS"):
        return date_range(name.replace("90", "N"), 90, today)
    if name in FIXED:
        where, unit = name.split("_", 1)
        unit = unit + "S"
        start, shift = _period_start(unit, today), _shift(unit)
        offset = {"LAST": -1, "THIS": 0, "NEXT": 1}[where]
        return shift(start, offset), shift(start, offset + 1)
    if name not in COUNTED or n is None:
        raise ValueError(f"unknown date literal {name}")
    unit = name.removeprefix("LAST_N_").removeprefix("NEXT_N_").removeprefix("N_").removesuffix("_AGO")
    start, shift = _period_start(unit, today), _shift(unit)
    if name.startswith("LAST_N_"):
        # LAST_N_DAYS counts today in; the longer units end where the current one starts.
        return (shift(start, -n), shift(start, 1)) if unit == "DAYS" else (shift(start, -n), start)
    if name.startswith("NEXT_N_"):
        return shift(start, 1), shift(start, n + 1)
    return shift(start, -n), shift(start, -n + 1)
