"""The emulator's query evaluation against a plain-Python reading of the same records (in-process)."""

from __future__ import annotations

import re
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.emulator.store import Org
from tests.support.emulator_orgs import in_process_org

FIELDS = ("LastName", "Email", "Marketing_Score__c", "HasOptedOutOfEmail", "Title")


@cache
def org() -> Org:
    org = in_process_org(leads=300, contacts=0, seed=21)
    table = org.tables["Lead"]
    for row in range(0, 300, 7):  # some values the generator would not give, to reach more edges
        table.cols["Title"][row] = None
        table.cols["LastName"][row] = "lovelace"
    return org


@cache
def leads() -> tuple[dict, ...]:
    cursor, _ = org().run_query(
        f"SELECT Id, {', '.join(FIELDS)} FROM Lead", include_deleted=False, version="60.0"
    )
    return tuple(cursor.render_page(list(cursor.rows)))


def run(where: str, order: str = "") -> list[str]:
    cursor, _ = org().run_query(
        f"SELECT Id FROM Lead WHERE {where} {order}", include_deleted=False, version="60.0"
    )
    return [r["Id"] for r in cursor.render_page(list(cursor.rows))]


def soql_literal(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value)


def holds(value, op: str, target) -> bool:
    """SOQL's comparison: strings ignore case; null equals only null and orders nothing."""
    if isinstance(value, str):
        value = value.lower()
    if isinstance(target, str):
        target = target.lower()
    if op == "=":
        return value == target
    if op == "!=":
        return value != target
    if value is None or target is None:
        return False
    return {"<": value < target, "<=": value <= target, ">": value > target, ">=": value >= target}[op]


def samples(field: str):
    seen = [r[field] for r in leads()]
    return st.sampled_from([*seen, None])


@st.composite
def comparisons(draw):
    field = draw(st.sampled_from(FIELDS))
    value = draw(samples(field))
    ops = ["=", "!="] if isinstance(value, bool) or value is None else ["=", "!=", "<", "<=", ">", ">="]
    return field, draw(st.sampled_from(ops)), value


@settings(max_examples=150, deadline=None)
@given(comparisons())
def test_comparisons_match_a_plain_reading(comparison):
    field, op, value = comparison
    expected = [r["Id"] for r in leads() if holds(r[field], op, value)]
    assert run(f"{field} {op} {soql_literal(value)}") == expected


@settings(max_examples=80, deadline=None)
@given(comparisons(), comparisons(), st.sampled_from(["AND", "OR"]))
def test_and_or_match_a_plain_reading(first, second, joiner):
    def check(r, c):
        return holds(r[c[0]], c[1], c[2])

    combine = all if joiner == "AND" else any
    expected = [r["Id"] for r in leads() if combine((check(r, first), check(r, second)))]
    text = f"({first[0]} {first[1]} {soql_literal(first[2])}) {joiner} ({second[0]} {second[1]} {soql_literal(second[2])})"
    assert run(text) == expected


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(("LastName", "Email", "Marketing_Score__c", "Title")),
    st.booleans(),
    st.sampled_from(["", "NULLS FIRST", "NULLS LAST"]),
)
def test_order_by_matches_a_plain_sort(field, descending, nulls):
    nulls_last = nulls == "NULLS LAST" or (descending and nulls != "NULLS FIRST")
    present = [r for r in leads() if r[field] is not None]
    absent = [r for r in leads() if r[field] is None]

    def key(r):
        v = r[field]
        return v.lower() if isinstance(v, str) else v

    ordered = sorted(sorted(present, key=lambda r: r["Id"]), key=key, reverse=descending)
    # Records with equal keys may come in any order, so the keys are compared, not the ids.
    expected = ordered + absent if nulls_last else absent + ordered
    direction = "DESC" if descending else "ASC"
    got = run("Id != null", f"ORDER BY {field} {direction} {nulls}")
    by_id = {r["Id"]: r for r in leads()}
    assert [key(by_id[i]) if by_id[i][field] is not None else None for i in got] == [
        key(r) if r[field] is not None else None for r in expected
    ]


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz%_", min_size=1, max_size=6))
def test_like_matches_a_plain_reading(pattern):
    regex = re.compile(
        "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern), re.I | re.S
    )
    expected = [r["Id"] for r in leads() if r["LastName"] is not None and regex.fullmatch(r["LastName"])]
    assert run(f"LastName LIKE '{pattern}'") == expected
