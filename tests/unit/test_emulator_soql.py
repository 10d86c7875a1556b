"""The emulator's SOQL parser: the subset it answers, and Salesforce's refusals for the rest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmsync.emulator.soql import (
    BoolOp,
    Comparison,
    FieldRef,
    Literal,
    Not,
    OrderItem,
    Query,
    SoqlError,
    like_pattern,
    parse,
    parse_datetime,
)


def where(text: str):
    return parse(f"SELECT Id FROM Lead WHERE {text}").where


def test_select_fields_parent_fields_and_from():
    query = parse("SELECT Id, Email, Account.Name, Owner.Email FROM Contact")
    assert query == Query(
        "Contact",
        (
            FieldRef(("Id",)),
            FieldRef(("Email",)),
            FieldRef(("Account", "Name")),
            FieldRef(("Owner", "Email")),
        ),
    )


def test_keywords_are_case_insensitive():
    assert parse("select Id from Lead where Email = null order by Id desc limit 5") == parse(
        "SELECT Id FROM Lead WHERE Email = NULL ORDER BY Id DESC LIMIT 5"
    )


def test_count_query():
    query = parse("SELECT COUNT() FROM Lead WHERE IsDeleted = false")
    assert query.count is True
    assert query.fields == ()


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_comparison_operators(op: str):
    assert where(f"Marketing_Score__c {op} 10.5") == Comparison(
        FieldRef(("Marketing_Score__c",)), op, Literal("number", 10.5)
    )


def test_angle_brackets_mean_not_equal():
    assert where("Email <> 'a'").op == "!="


def test_in_and_not_in_lists():
    assert where("Status IN ('Open', 'Closed')") == Comparison(
        FieldRef(("Status",)), "IN", (Literal("string", "Open"), Literal("string", "Closed"))
    )
    assert where("Status NOT IN ('Open')").op == "NOTIN"


def test_null_booleans_and_like():
    assert where("Email = null").value == Literal("null", None)
    assert where("HasOptedOutOfEmail = TRUE").value == Literal("boolean", True)
    assert where("LastName LIKE 'Lo%'") == Comparison(
        FieldRef(("LastName",)), "LIKE", Literal("string", "Lo%")
    )


@pytest.mark.parametrize(
    "literal",
    [
        "2026-11-28T10:00:00Z",
        "2026-11-28T10:00:00.000Z",
        "2026-11-28T10:00:00+00:00",
        "2026-11-28T11:00:00+0100",
        "2026-11-28T05:00:00-05:00",
    ],
)
def test_date_time_literal_forms_mean_the_same_instant(literal: str):
    assert where(f"SystemModstamp >= {literal}").value == Literal("datetime", 1795860000000)


def test_date_literal():
    assert where("CloseDate = 2026-12-01").value == Literal("date", "2026-12-01")


def test_and_or_not_and_parentheses():
    tree = where("(LastName = 'a' OR LastName = 'b') AND NOT Email = null")
    assert isinstance(tree, BoolOp) and tree.op == "AND"
    assert isinstance(tree.items[0], BoolOp) and tree.items[0].op == "OR"
    assert isinstance(tree.items[1], Not)


@pytest.mark.parametrize("text", ["a = 1 AND b = 2 OR c = 3", "a = 1 OR b = 2 AND c = 3"])
def test_mixing_and_or_without_parentheses_is_malformed(text: str):
    with pytest.raises(SoqlError) as error:
        where(text)
    assert error.value.error_code == "MALFORMED_QUERY"


def test_order_by_several_fields_with_directions_and_nulls():
    query = parse("SELECT Id FROM Lead ORDER BY SystemModstamp ASC, LastName DESC NULLS FIRST, Id")
    assert query.order_by == (
        OrderItem(FieldRef(("SystemModstamp",)), False, False),
        OrderItem(FieldRef(("LastName",)), True, False),
        OrderItem(FieldRef(("Id",)), False, False),
    )
    assert parse("SELECT Id FROM Lead ORDER BY Email DESC").order_by[0].nulls_last is True


def test_limit_and_offset():
    query = parse("SELECT Id FROM Lead LIMIT 10 OFFSET 20")
    assert (query.limit, query.offset) == (10, 20)


def test_offset_over_2000_is_refused():
    with pytest.raises(SoqlError) as error:
        parse("SELECT Id FROM Lead OFFSET 2001")
    assert error.value.error_code == "NUMBER_OUTSIDE_VALID_RANGE"


def test_grandparent_paths_are_invalid_fields():
    with pytest.raises(SoqlError) as error:
        parse("SELECT Account.Owner.Email FROM Contact")
    assert error.value.error_code == "INVALID_FIELD"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SELECT",
        "SELECT FROM Lead",
        "SELECT Id Lead",
        "SELECT Id FROM",
        "SELECT Id FROM Lead WHERE",
        "SELECT Id FROM Lead WHERE Email",
        "SELECT Id FROM Lead WHERE Email = ",
        "SELECT Id FROM Lead WHERE Email IN ()",
        "SELECT Id FROM Lead GROUP BY Email",
        "SELECT Id FROM Lead FOR UPDATE",
        "SELECT COUNT(Id) FROM Lead",
        "SELECT Id, (SELECT Id, (SELECT Id FROM Contacts) FROM Contacts) FROM Account",
        "SELECT Id, (SELECT Id FROM Contacts FROM Account",
        "SELECT FIELDS(ALL) FROM Lead",
        "SELECT Id FROM Lead LIMIT -1",
        "SELECT Id FROM Lead LIMIT 1.5",
        "SELECT Id FROM Lead WHERE Email = 'unterminated",
        "SELECT Id FROM Lead WHERE Email = 'bad \\q escape'",
        "SELECT Id FROM Lead WHERE CreatedDate > 2026-13-45T00:00:00Z",
        'SELECT Id FROM Lead WHERE Email = "double"',
        "SELECT Id FROM Lead ORDER BY",
        "SELECT Id FROM Lead ORDER BY Id NULLS MIDDLE",
        "SELECT Id FROM Lead;",
    ],
)
def test_unsupported_queries_are_malformed(text: str):
    with pytest.raises(SoqlError) as error:
        parse(text)
    assert error.value.error_code in ("MALFORMED_QUERY", "INVALID_FIELD")


@given(st.text(max_size=80))
def test_any_text_parses_or_is_refused_as_soql_error(text: str):
    try:
        parse(text)
    except SoqlError as error:
        assert error.error_code in ("MALFORMED_QUERY", "INVALID_FIELD", "NUMBER_OUTSIDE_VALID_RANGE")


@given(st.text(max_size=40))
def test_string_literals_round_trip_through_escapes(value: str):
    escaped = (
        value.replace("\\", "\\\\")
        .replace("'", "\\'")
        .replace("\n", "\\n")
        .replace("\t", "\\t")
        .replace("\r", "\\r")
    )
    assert where(f"LastName = '{escaped}'").value == Literal("string", value)


_names = st.sampled_from(["Email", "LastName", "Company", "Marketing_Score__c"])
_leaf = st.builds(
    lambda f, n: Comparison(FieldRef((f,)), "=", Literal("number", n)), _names, st.integers(0, 999)
)


def _tree(children):
    return st.one_of(
        st.builds(lambda items: BoolOp("AND", tuple(items)), st.lists(children, min_size=2, max_size=3)),
        st.builds(lambda items: BoolOp("OR", tuple(items)), st.lists(children, min_size=2, max_size=3)),
        st.builds(Not, children),
    )


def _render(cond) -> str:
    if isinstance(cond, Comparison):
        return f"{cond.field.text} = {cond.value.value}"
    if isinstance(cond, Not):
        return f"NOT ({_render(cond.item)})"
    return f" {cond.op} ".join(f"({_render(c)})" for c in cond.items)


@given(st.recursive(_leaf, _tree, max_leaves=8))
def test_parenthesised_conditions_round_trip(tree):
    assert where(_render(tree)) == tree


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("Lo%", "Lovelace", True),
        ("lo%", "LOVELACE", True),
        ("%lace", "Lovelace", True),
        ("L_ve%", "Love", True),
        ("L_ve", "Lve", False),
        ("100\\%", "100%", True),
        ("100\\%", "1000", False),
        ("a.b", "axb", False),
    ],
)
def test_like_patterns(pattern: str, text: str, matches: bool):
    assert (like_pattern(pattern).fullmatch(text) is not None) is matches


@given(st.text(alphabet=st.characters(blacklist_characters="%_\\"), max_size=30))
def test_like_pattern_without_wildcards_matches_exactly_itself(text: str):
    assert like_pattern(text).fullmatch(text)
    assert not like_pattern(text).fullmatch(text + "x")


def test_parse_datetime_handles_offsets():
    assert parse_datetime("1970-01-01T01:00:00+01:00") == 0
