"""Pure parts of the Salesforce connector: CSV rows across chunks, typed values, SOQL and URI limits."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.common.crm.salesforce import ConnectorOptions, SalesforceCredentials
from crmsync.common.crm.salesforce import _soql as soql
from crmsync.common.crm.salesforce._values import CsvRows, CsvShaper, converter_for, shape_rest, to_salesforce

cells = st.text(alphabet=st.sampled_from(list("ab ,\"\n'é1")), max_size=8)
tables = st.lists(st.lists(cells, min_size=3, max_size=3), min_size=1, max_size=20)


def _csv(rows: list[list[str]], *, line_end: str, quoting: int = csv.QUOTE_MINIMAL) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=line_end, quoting=quoting).writerows(rows)
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(
    rows=tables,
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
    line_end=st.sampled_from(["\n", "\r\n"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
)
def test_csv_rows_are_the_same_however_the_body_is_cut_into_chunks(rows, cuts, line_end, quoting) -> None:
    body = _csv(rows, line_end=line_end, quoting=quoting)
    expected = [r for r in csv.reader(io.StringIO(body)) if r]
    parser = CsvRows()
    got: list[list[str]] = []
    start = 0
    for cut in sorted({min(c, len(body)) for c in cuts}):
        got += parser.feed(body[start:cut])
        start = cut
    got += parser.feed(body[start:])
    got += parser.close()
    assert got == expected


def test_csv_rows_keep_a_quoted_newline_inside_one_cell() -> None:
    parser = CsvRows()
    assert parser.feed('Id,Description\n1,"two\n') == [["Id", "Description"]]
    assert parser.feed('lines"\n2,x\n') == [["1", "two\nlines"], ["2", "x"]]


PLAN = {
    "IsConverted": converter_for("boolean"),
    "NumberOfEmployees": converter_for("int"),
    "Marketing_Score__c": converter_for("double"),
    "ConvertedDate": converter_for("date"),
    "SystemModstamp": converter_for("datetime"),
    "Email": converter_for("email"),
    "Account": {"Name": converter_for("string"), "AnnualRevenue": converter_for("currency")},
}


def test_rest_and_bulk_records_come_out_identical() -> None:
    rest = {
        "attributes": {"type": "Lead", "url": "/x"},
        "IsConverted": True,
        "NumberOfEmployees": 12,
        "Marketing_Score__c": 42,
        "ConvertedDate": "2026-11-01",
        "SystemModstamp": "2026-11-28T10:00:00.000+0000",
        "Email": "ada@example.com",
        "Account": {"attributes": {"type": "Account"}, "Name": "Acme", "AnnualRevenue": 1000.5},
    }
    header = [
        "IsConverted",
        "NumberOfEmployees",
        "Marketing_Score__c",
        "ConvertedDate",
        "SystemModstamp",
        "Email",
        "Account.Name",
        "Account.AnnualRevenue",
    ]
    row = ["true", "12", "42", "2026-11-01", "2026-11-28T10:00:00.000Z", "ada@example.com", "Acme", "1000.5"]
    from_rest = shape_rest(rest, PLAN)
    from_bulk = CsvShaper(header, PLAN).shape(row)
    assert from_rest == from_bulk
    assert from_rest["SystemModstamp"] == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert from_rest["ConvertedDate"] == date(2026, 11, 1)
    assert isinstance(from_rest["Marketing_Score__c"], float)


def test_empty_values_and_empty_relationships_are_none_on_both_roads() -> None:
    rest = {"attributes": {}, "Email": None, "IsConverted": False, "Account": None}
    bulk = CsvShaper(["Email", "IsConverted", "Account.Name"], PLAN).shape(["", "false", ""])
    assert shape_rest(rest, PLAN) == bulk == {"Email": None, "IsConverted": False, "Account": None}


def test_outgoing_dates_and_datetimes_are_iso_text_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    assert to_salesforce(datetime(2026, 1, 1, 13, tzinfo=paris)) == "2026-01-01T12:00:00.000Z"
    assert to_salesforce(date(2026, 1, 2)) == "2026-01-02"
    assert to_salesforce(3.5) == 3.5


def test_soql_strings_are_escaped_and_names_are_checked() -> None:
    assert soql.quote("O'Brien\\") == "'O\\'Brien\\\\'"
    with pytest.raises(ValueError):
        soql.check_name("Name FROM User --")
    assert soql.datetime_literal(datetime(2026, 11, 28, 10, 0, 0, 999000)) == "2026-11-28T10:00:00Z"


@given(n=st.integers(min_value=1, max_value=400), limit=st.integers(min_value=600, max_value=5000))
def test_id_chunks_fit_the_uri_limit_and_keep_every_id_once(n, limit) -> None:
    ids = [f"00Q{i:015d}" for i in range(n)]
    base = "https://example.my.salesforce.com/services/data/v60.0/query"
    empty = soql.url_bytes(soql.query_url(base, soql.select(["Id", "Email"], "Lead", where="Id IN ()")))
    chunks = soql.chunk_ids(ids, base_bytes=empty, limit=limit)
    assert [i for c in chunks for i in c] == ids
    for chunk in chunks:
        url = soql.query_url(base, soql.select(["Id", "Email"], "Lead", where=soql.id_in(chunk)))
        assert soql.url_bytes(url) <= limit


def test_field_groups_each_fit_and_cover_every_field_once() -> None:
    fields = ["Id", "SystemModstamp"] + [f"Custom_Field_Number_{i}__c" for i in range(300)]
    base = "https://example.my.salesforce.com/services/data/v60.0/query"

    def fits(group):
        return soql.url_bytes(soql.query_url(base, soql.select(group, "Lead"))) <= 2000

    groups = soql.split_fields(fields, fits=fits, keep=["Id", "SystemModstamp"])
    assert len(groups) > 1
    assert all(g[:2] == ["Id", "SystemModstamp"] and fits(g) for g in groups)
    assert sorted(f for g in groups for f in g[2:]) == sorted(fields[2:])


def test_credentials_refuse_a_grant_without_its_secret_and_hide_secrets_in_repr() -> None:
    with pytest.raises(ValueError, match="refresh_token"):
        SalesforceCredentials(login_url="https://x", auth_method="refresh_token", client_id="c")
    creds = SalesforceCredentials(
        login_url="https://x", auth_method="client_credentials", client_id="c", client_secret="s3cr3t"
    )
    assert "s3cr3t" not in repr(creds)


def test_budget_reserve_is_the_larger_of_the_fraction_and_the_fixed_calls() -> None:
    assert ConnectorOptions(budget_reserve_fraction=0.1).reserve_for(15_000) == 1500
    assert (
        ConnectorOptions(budget_reserve_fraction=0.1, budget_reserve_calls=4000).reserve_for(15_000) == 4000
    )


def test_httpx_encodes_an_id_list_as_the_chunker_counts_it() -> None:
    url = httpx.URL("https://x/q", params={"q": "'a',"})
    assert str(url).endswith("%27a%27%2C")
