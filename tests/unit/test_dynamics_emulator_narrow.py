"""Reads by id and incremental reads answer without scanning a million records; other filters still scan."""

from __future__ import annotations

import time
from datetime import timedelta

import orjson

from crmsync.dynamics_emulator.api.webapi import dispatch
from crmsync.dynamics_emulator.http import Call
from crmsync.dynamics_emulator.narrow import candidate_rows
from crmsync.dynamics_emulator.schema import TABLES
from crmsync.dynamics_emulator.state import Emulator, Settings

ROOT = "https://dataverse.test/api/data/v9.2"
EPOCH = "2026-11-02T00:00:00Z"


def _get(emulator: Emulator, path: str, query: dict[str, str]) -> dict[str, object]:
    reply = dispatch(emulator.env, Call("GET", path, query, {}, b"", ROOT))
    assert reply.status == 200, reply.body
    return orjson.loads(reply.body)


def test_candidates_of_the_shapes_that_narrow_and_none_for_the_rest() -> None:
    emulator = Emulator(Settings(50, 50, 1, "c", "s", "t"))
    rows = emulator.env.rows("lead")
    table = TABLES["lead"]
    a, b = (str(rows.get(r)["leadid"]) for r in (7, 3))  # type: ignore[index]
    assert candidate_rows(table, rows, f"leadid eq {a} or (leadid eq {b})", EPOCH) == [3, 7]
    assert candidate_rows(table, rows, f"statecode eq 0 and (leadid eq {a})", EPOCH) == [7]
    assert candidate_rows(table, rows, "modifiedon ge 2026-11-03T00:00:00Z and statecode eq 0", EPOCH) == []
    for scanning in (f"leadid eq {a} or statecode eq 0", "modifiedon ge 2026-10-01", "lastname eq 'x'", None):
        assert candidate_rows(table, rows, scanning, EPOCH) is None


def test_by_ids_and_changes_since_answer_at_once_over_a_million_records() -> None:
    emulator = Emulator(Settings(1_000_000, 1_000_000, 1, "c", "s", "t"))
    rows = emulator.env.rows("contact")
    ids = [str(rows.get(r)["contactid"]) for r in (999_998, 5, 500_000)]  # type: ignore[index]
    started = time.perf_counter()
    where = " or ".join(f"contactid eq {i}" for i in ids)
    found = _get(emulator, "contacts", {"$select": "lastname", "$filter": where})["value"]
    assert sorted(r["contactid"] for r in found) == sorted(ids)  # type: ignore[index]
    edited = _get(emulator, f"contacts({ids[1]})", {})
    dispatch(
        emulator.env,
        Call("PATCH", f"contacts({ids[1]})", {}, {"if-match": "*"}, b'{"jobtitle": "CEO"}', ROOT),
    )
    since = emulator.env.data.epoch + timedelta(seconds=1)  # after the generated data: changes only
    changed = _get(emulator, "contacts", {"$filter": f"modifiedon gt {since:%Y-%m-%dT%H:%M:%SZ}"})
    assert [r["contactid"] for r in changed["value"]] == [edited["contactid"]]  # type: ignore[index]
    assert time.perf_counter() - started < 2
