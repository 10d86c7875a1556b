"""Per-field origin and time: no echo (R12), newer wins with CRM on a tie (R13), sticky opt-outs (R23)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from crmsync.common.domain.contacts import (
    ContactValues,
    FieldMeta,
    merge_from_crm,
    merge_local_changes,
)
from crmsync.common.domain.conversion import local_only, merge_converted_lead

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def _local(value, at=T0, source="form") -> ContactValues:
    return ContactValues({"first_name": value}, {"first_name": FieldMeta(source, at)})


def test_r12_values_pulled_from_the_crm_are_marked_crm_origin() -> None:
    merged = merge_from_crm(ContactValues(), {"first_name": "Ada"}, modstamp=T0)
    assert merged.values.meta["first_name"].from_crm
    assert merged.changed == ("first_name",)


def test_r13_a_newer_local_value_survives_an_older_crm_record() -> None:
    merged = merge_from_crm(_local("Local", T0 + timedelta(seconds=5)), {"first_name": "Crm"}, modstamp=T0)
    assert merged.values.fields["first_name"] == "Local"
    assert merged.kept_local == ("first_name",)
    assert merged.conflicts[0].winner == "local"


def test_r13_a_newer_crm_record_wins_over_an_older_local_value() -> None:
    merged = merge_from_crm(_local("Local", T0), {"first_name": "Crm"}, modstamp=T0 + timedelta(seconds=1))
    assert merged.values.fields["first_name"] == "Crm"
    assert merged.conflicts[0].winner == "crm"


def test_r13_on_a_tie_the_crm_wins_both_ways() -> None:
    assert (
        merge_from_crm(_local("Local"), {"first_name": "Crm"}, modstamp=T0).values.fields["first_name"]
        == "Crm"
    )
    crm = ContactValues({"first_name": "Crm"}, {"first_name": FieldMeta("crm", T0)})
    merged = merge_local_changes(crm, {"first_name": "Local"}, source="form", occurred_at=T0)
    assert merged.values.fields["first_name"] == "Crm"
    assert merged.kept_local == ("first_name",)


def test_r13_an_event_older_than_the_stored_value_is_dropped() -> None:
    merged = merge_local_changes(
        _local("Newer", T0), {"first_name": "Older"}, source="form", occurred_at=T0 - timedelta(minutes=1)
    )
    assert merged.values.fields["first_name"] == "Newer"
    assert merged.changed == ()


def test_r23_a_crm_opt_in_never_clears_a_local_opt_out() -> None:
    opted = ContactValues({"opted_out": True}, {"opted_out": FieldMeta("form", T0)})
    merged = merge_from_crm(opted, {"opted_out": False}, modstamp=T0 + timedelta(days=1))
    assert merged.values.fields["opted_out"] is True


def test_r23_a_crm_opt_out_sets_the_local_opt_out() -> None:
    merged = merge_from_crm(ContactValues({"opted_out": False}), {"opted_out": True}, modstamp=T0)
    assert merged.values.fields["opted_out"] is True


times = st.integers(min_value=-100, max_value=100).map(lambda s: T0 + timedelta(seconds=s))


@given(local_at=times, crm_at=times, local=st.text(max_size=3), crm=st.text(max_size=3))
def test_r13_the_newer_side_wins_whatever_the_order_of_arrival(local_at, crm_at, local, crm) -> None:
    # Local first, then the CRM record; and the CRM record first, then the local event.
    a = merge_from_crm(
        merge_local_changes(ContactValues(), {"f": local}, source="form", occurred_at=local_at).values,
        {"f": crm},
        modstamp=crm_at,
    ).values.fields["f"]
    b = merge_local_changes(
        merge_from_crm(ContactValues(), {"f": crm}, modstamp=crm_at).values,
        {"f": local},
        source="form",
        occurred_at=local_at,
    ).values.fields["f"]
    expected = local if local_at > crm_at else crm
    assert a == b == expected


# ----------------------------------------------------------- stored metadata

origins = st.sampled_from(["crm", "form", "user_edit"])
metas = st.builds(FieldMeta, origin=origins, at=times)
names = st.sampled_from(["first_name", "last_name", "job_title", "score", "opted_out"])


@given(meta=st.dictionaries(names, metas), stamp=st.none() | times)
def test_r12_r13_stored_metadata_reads_back_as_every_field_had_it(meta, stamp) -> None:
    values = ContactValues(dict.fromkeys(meta, "v"), meta)

    stored = values.stored_meta(stamp)

    assert ContactValues.from_stored(values.fields, stored, stamp) == values


def test_r12_a_freshly_pulled_record_stores_no_entry_per_field() -> None:
    pulled = merge_from_crm(ContactValues(), {"first_name": "Ada", "job_title": "CTO"}, modstamp=T0).values

    assert pulled.stored_meta(T0) == {}
    assert ContactValues.from_stored(pulled.fields, {}, T0).meta["job_title"] == FieldMeta("crm", T0)


def test_r13_a_local_value_and_an_older_crm_value_keep_their_entries() -> None:
    values = ContactValues(
        {"first_name": "Ada", "job_title": "CTO", "phone": "1"},
        {
            "first_name": FieldMeta("crm", T0),
            "job_title": FieldMeta("form", T0 + timedelta(seconds=5)),
            "phone": FieldMeta("crm", T0 - timedelta(seconds=5)),
        },
    )

    assert set(values.stored_meta(T0)) == {"job_title", "phone"}
    # A row no longer tied to a CRM time implies nothing.
    assert set(values.stored_meta(None)) == {"first_name", "job_title", "phone"}


def test_r12_a_field_without_a_crm_time_has_no_origin_rather_than_a_made_up_one() -> None:
    assert ContactValues.from_stored({"first_name": "Ada"}, {}, None).meta == {}


# ------------------------------------------------------------ lead conversion (R17)


def test_r17_a_converted_lead_hands_over_its_local_values_and_their_history_not_its_crm_ones() -> None:
    lead = ContactValues(
        {"first_name": "Ada", "webinar": "attended", "score": 40},
        {
            "first_name": FieldMeta("crm", T0),
            "webinar": FieldMeta("form", T0 - timedelta(days=3)),
            "score": FieldMeta("scoring", T0 - timedelta(days=1)),
        },
    )
    kept = local_only(lead)
    assert kept.fields == {"webinar": "attended", "score": 40}
    assert kept.meta == {"webinar": FieldMeta("form", T0 - timedelta(days=3)), "score": lead.meta["score"]}


def test_r17_the_contact_takes_the_lead_s_newer_local_values_and_keeps_its_own_newer_ones() -> None:
    contact = ContactValues(
        {"first_name": "Ada", "score": 70, "phone": "1"},
        {
            "first_name": FieldMeta("crm", T0),
            "score": FieldMeta("scoring", T0),
            "phone": FieldMeta("crm", T0),
        },
    )
    lead = ContactValues(
        {"first_name": "A.", "score": 40, "webinar": "attended", "phone": "2"},
        {
            "first_name": FieldMeta("user_edit", T0 + timedelta(minutes=1)),
            "score": FieldMeta("scoring", T0 - timedelta(days=1)),
            "webinar": FieldMeta("form", T0 - timedelta(days=3)),
            "phone": FieldMeta("crm", T0 + timedelta(minutes=5)),
        },
    )
    merged = merge_converted_lead(contact, lead)
    assert merged.fields == {"first_name": "A.", "score": 70, "phone": "1", "webinar": "attended"}
    assert merged.meta["first_name"] == FieldMeta("user_edit", T0 + timedelta(minutes=1))
    assert merged.meta["webinar"] == FieldMeta("form", T0 - timedelta(days=3))
    assert merged.meta["phone"] == FieldMeta("crm", T0)  # the Lead's CRM values are not the Contact's


@given(
    contact_meta=st.dictionaries(names, metas),
    lead_meta=st.dictionaries(names, metas),
)
def test_r17_after_a_conversion_every_field_holds_the_newest_local_value_or_the_contact_s_own(
    contact_meta, lead_meta
) -> None:
    contact = ContactValues({n: f"contact {n}" for n in contact_meta}, contact_meta)
    lead = ContactValues({n: f"lead {n}" for n in lead_meta}, lead_meta)
    merged = merge_converted_lead(contact, lead)
    assert set(merged.fields) == set(contact.fields) | set(local_only(lead).fields)
    for name, value in merged.fields.items():
        if value == f"lead {name}":
            assert not lead_meta[name].from_crm
            assert name not in contact_meta or contact_meta[name].at < lead_meta[name].at
        else:
            assert merged.meta[name] == contact_meta[name]
