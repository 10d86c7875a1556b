"""The emulator's record ids and dataset generator (pure, in-process)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from crmsync.emulator import ids
from crmsync.emulator.dataset import CHUNK, generate, sizes

NOW = 1_795_860_000_000  # 2026-11-28T10:00:00Z
WEEK_MS = 7 * 86_400_000


def test_case_suffix_follows_salesforce_rule():
    # The documented example: 001A0000006Vm9r is 001A0000006Vm9rIAC in its 18-character form.
    assert ids.case_suffix("001A0000006Vm9r") == "IAC"
    assert ids.normalize("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert ids.normalize("001A0000006Vm9riac") == "001A0000006Vm9rIAC"
    assert ids.normalize("001A0000006Vm9rXXX") is None


@given(
    st.sampled_from(sorted(ids.KEY_PREFIXES.values())), st.integers(0, 62**3 - 1), st.integers(0, 62**8 - 1)
)
def test_ids_encode_object_org_and_row(prefix: str, org: int, row: int):
    tag = ids.org_tag(org)
    record_id = ids.make_id(prefix, tag, row)
    assert len(record_id) == 18
    assert record_id[15:] == ids.case_suffix(record_id[:15])
    assert ids.parse(record_id) == (prefix, tag, row)
    assert ids.parse(record_id[:15]) == (prefix, tag, row)


@given(st.integers(0, 62**8 - 2))
def test_ids_sort_like_rows(row: int):
    assert ids.make_id("00Q", "001", row)[:15] < ids.make_id("00Q", "001", row + 1)[:15]


def values(columns, name: str) -> list:
    column = columns[name]
    return [column[row] for row in range(column.n)]


def test_same_seed_same_records_other_seed_other_records():
    first = generate(leads=500, contacts=500, seed=3, now_ms=NOW)
    again = generate(leads=500, contacts=500, seed=3, now_ms=NOW)
    other = generate(leads=500, contacts=500, seed=4, now_ms=NOW)
    for obj in ("Lead", "Contact", "Account", "User", "Opportunity"):
        for name in first[obj]:
            assert values(first[obj], name) == values(again[obj], name), (obj, name)
    assert values(first["Lead"], "Email") != values(other["Lead"], "Email")


def test_reading_rows_in_any_order_gives_the_same_values():
    forward = generate(leads=3 * CHUNK, contacts=0, seed=9, now_ms=NOW)["Lead"]["Email"]
    backward = generate(leads=3 * CHUNK, contacts=0, seed=9, now_ms=NOW)["Lead"]["Email"]
    rows = range(3 * CHUNK)
    assert [forward[r] for r in rows] == [backward[r] for r in reversed(rows)][::-1]


def test_sizes_of_related_objects():
    assert sizes(leads=10, contacts=0) == {
        "User": 5,
        "Account": 3,
        "Lead": 10,
        "Contact": 0,
        "Opportunity": 0,
    }
    assert sizes(leads=1_000_000, contacts=1_000_000) == {
        "User": 2000,
        "Account": 333_333,
        "Lead": 1_000_000,
        "Contact": 1_000_000,
        "Opportunity": 200_000,
    }


def test_emails_are_unique_across_leads_and_contacts_with_some_blank():
    org = generate(leads=20_000, contacts=20_000, seed=1, now_ms=NOW)
    emails = values(org["Lead"], "Email") + values(org["Contact"], "Email")
    present = [e for e in emails if e is not None]
    assert len(set(present)) == len(present)
    assert 0 < emails.count(None) < len(emails) * 0.02


def test_some_people_look_like_duplicates_of_the_row_before():
    lead = generate(leads=20_000, contacts=0, seed=1, now_ms=NOW)["Lead"]
    firsts, lasts = values(lead, "FirstName"), values(lead, "LastName")
    twins = sum(
        1
        for i in range(1, len(lasts))
        if lasts[i] == lasts[i - 1] and firsts[i] == firsts[i - 1] and firsts[i]
    )
    assert 0.01 * len(lasts) < twins < 0.05 * len(lasts)


def test_some_fields_are_blank_and_names_are_realistic():
    lead = generate(leads=5000, contacts=0, seed=2, now_ms=NOW)["Lead"]
    for name, low, high in (
        ("Title", 0.04, 0.12),
        ("Phone", 0.06, 0.14),
        ("MobilePhone", 0.35, 0.45),
        ("City", 0.02, 0.08),
    ):
        share = values(lead, name).count(None) / 5000
        assert low < share < high, name
    assert values(lead, "LastName").count(None) == 0
    assert values(lead, "Company").count(None) == 0
    assert len(Counter(values(lead, "FirstName"))) > 50


def test_modstamps_spread_over_the_past_weeks_in_whole_seconds():
    lead = generate(leads=5000, contacts=0, seed=2, now_ms=NOW)["Lead"]
    stamps = values(lead, "SystemModstamp")
    assert all(NOW - 4 * WEEK_MS - 60_000 <= s < NOW for s in stamps)
    assert max(stamps) - min(stamps) > 3 * WEEK_MS
    assert all(s % 1000 == 0 for s in stamps)
    created = values(lead, "CreatedDate")
    assert all(c <= s for c, s in zip(created, stamps, strict=True))
    assert values(lead, "LastModifiedDate") == stamps


def test_references_point_at_existing_rows():
    org = generate(leads=100, contacts=3000, seed=5, now_ms=NOW)
    users, accounts = org["User"]["LastName"].n, org["Account"]["Name"].n
    assert all(0 <= o < users for o in values(org["Lead"], "OwnerId"))
    assert all(a is None or 0 <= a < accounts for a in values(org["Contact"], "AccountId"))
    opportunity_contacts = values(org["Opportunity"], "ContactId")
    assert all(0 <= c < 3000 for c in opportunity_contacts)
    assert len(set(opportunity_contacts)) == len(opportunity_contacts)


def test_a_million_records_load_without_building_them():
    org = generate(leads=1_000_000, contacts=1_000_000, seed=1, now_ms=NOW)
    assert org["Lead"]["Email"].chunks == {}
    last_name = org["Contact"]["LastName"][999_999]
    assert last_name
    assert list(org["Contact"]["LastName"].chunks) == [999_999 // CHUNK]
