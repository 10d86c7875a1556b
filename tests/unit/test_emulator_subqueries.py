"""Parent-to-child subqueries (Account → Contacts, Opportunities) in Salesforce's nested shape."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from crmsync.emulator.schema import OBJECTS, describe_object
from crmsync.emulator.soql import FieldRef, Query, parse
from crmsync.emulator.store import ApiError, Org
from tests.support.emulator_orgs import in_process_org

CHILD_TYPES = {"Contacts": "Contact", "Opportunities": "Opportunity"}


@cache
def _org() -> Org:
    return in_process_org(leads=0, contacts=60, seed=5)


def _records(query: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
    cursor, _ = _org().run_query(query, include_deleted=include_deleted, version="60.0")
    return cursor.render_page(list(cursor.rows))


def _children_by_account(obj: str, field: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for record in _records(f"SELECT Id, {field} FROM {obj}"):
        if record[field] is not None:
            found.setdefault(record[field], []).append(record["Id"])
    return found


def test_subqueries_parse_in_the_select_list():
    query = parse(
        "SELECT Id, (SELECT Id FROM Contacts WHERE Email != null ORDER BY LastName LIMIT 2) FROM Account"
    )
    assert query.fields == (FieldRef(("Id",)),)
    (sub,) = query.subqueries
    assert isinstance(sub, Query)
    assert (sub.sobject, sub.fields, sub.limit) == ("Contacts", (FieldRef(("Id",)),), 2)
    assert sub.order_by[0].field == FieldRef(("LastName",))


def test_subqueries_give_each_parent_its_children_in_the_nested_shape():
    contacts = _children_by_account("Contact", "AccountId")
    opportunities = _children_by_account("Opportunity", "AccountId")
    accounts = _records("SELECT Id, (SELECT Id FROM Contacts), (SELECT Id FROM Opportunities) FROM Account")
    assert accounts
    for account in accounts:
        assert list(account) == ["attributes", "Id", "Contacts", "Opportunities"]
        for key, expected in (("Contacts", contacts), ("Opportunities", opportunities)):
            kids = expected.get(account["Id"], [])
            if not kids:
                assert account[key] is None  # as Salesforce: no children is null, not an empty list
                continue
            nested = account[key]
            assert (nested["totalSize"], nested["done"]) == (len(kids), True)
            assert [r["Id"] for r in nested["records"]] == kids
            assert nested["records"][0]["attributes"]["type"] == key.removesuffix("s").replace(
                "Opportunitie", "Opportunity"
            )


def test_subqueries_keys_stand_where_the_select_list_puts_them():
    (account,) = _records(
        "SELECT Id, (SELECT Id FROM Contacts), Name, Owner.Email, Owner.Name, "
        "(SELECT Id FROM Opportunities), Industry FROM Account LIMIT 1"
    )
    assert list(account) == ["attributes", "Id", "Contacts", "Name", "Owner", "Opportunities", "Industry"]


def test_subqueries_filter_order_and_limit_per_parent():
    accounts = _records(
        "SELECT Id, (SELECT LastName, Email FROM contacts WHERE Email != null ORDER BY LastName DESC LIMIT 2) "
        "FROM Account"
    )
    with_children = [a for a in accounts if a["Contacts"] is not None]
    assert with_children
    for account in with_children:
        records = account["Contacts"]["records"]
        assert 1 <= len(records) <= 2
        assert all(r["Email"] is not None for r in records)
        names = [r["LastName"].lower() for r in records]
        assert names == sorted(names, reverse=True)
        assert list(records[0]) == ["attributes", "LastName", "Email"]


def test_subqueries_leave_out_deleted_children_unless_query_all():
    org = _org()
    account_id, contact_ids = next(iter(_children_by_account("Contact", "AccountId").items()))
    org.delete("Contact", contact_ids[0])
    try:
        query = f"SELECT Id, (SELECT Id FROM Contacts) FROM Account WHERE Id = '{account_id}'"
        (live,) = _records(query)
        (everything,) = _records(query, include_deleted=True)
        ids = [r["Id"] for r in live["Contacts"]["records"]] if live["Contacts"] else []
        assert contact_ids[0] not in ids
        assert contact_ids[0] in [r["Id"] for r in everything["Contacts"]["records"]]
    finally:
        org.undelete("Contact", contact_ids[0])


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("SELECT Id, (SELECT Id FROM Nothings) FROM Account", "INVALID_TYPE"),
        ("SELECT Id, (SELECT Id FROM Contacts) FROM Lead", "INVALID_TYPE"),
        ("SELECT Id, (SELECT Nope FROM Contacts) FROM Account", "INVALID_FIELD"),
    ],
)
def test_subqueries_refuse_unknown_relationships_and_fields(query: str, code: str):
    with pytest.raises(ApiError) as refused:
        _records(query)
    assert refused.value.error_code == code


def test_subqueries_are_refused_by_bulk_queries():
    with pytest.raises(ApiError):
        _org().run_query(
            "SELECT Id, (SELECT Id FROM Contacts) FROM Account",
            include_deleted=False,
            version="60.0",
            csv=True,
        )


def test_subqueries_child_relationships_are_in_the_describe():
    relationships = describe_object(OBJECTS["Account"], "60.0")["childRelationships"]
    assert {(r["relationshipName"], r["childSObject"], r["field"]) for r in relationships} == {
        ("Contacts", "Contact", "AccountId"),
        ("Opportunities", "Opportunity", "AccountId"),
    }
