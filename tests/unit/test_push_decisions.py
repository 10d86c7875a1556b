"""What the CRM gets for a contact change (R8-R13) and from the outbound job (R11, R12, R23)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmsync.common.domain.contacts import ContactValues, FieldMeta, merge_local_changes
from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import FieldKind, Mapping, MappingRow, PushPolicy
from crmsync.common.domain.push import (
    ContactState,
    Operation,
    Reason,
    decide_outbound,
    decide_push,
    fold_writes,
    is_scheduled_field,
)

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)

ROWS = (
    MappingRow("email", DataType.EMAIL, lead_source="Email", contact_source="Email"),
    MappingRow("first_name", DataType.TEXT, lead_source="FirstName", contact_source="FirstName"),
    MappingRow("last_name", DataType.TEXT, lead_source="LastName", contact_source="LastName"),
    MappingRow("company", DataType.TEXT, lead_source="Company", contact_source=None),
    MappingRow("job_title", DataType.TEXT, lead_source="Title", contact_source="Title", allow_push=False),
    MappingRow("city", DataType.TEXT, lead_source="City", contact_source="MailingCity", allow_push=True),
    MappingRow("product", DataType.MULTI_TEXT, lead_source="Product__c", contact_source="Product__c"),
    MappingRow(
        "opted_out", DataType.BOOLEAN, lead_source="HasOptedOutOfEmail", contact_source="HasOptedOutOfEmail"
    ),
    MappingRow("score", DataType.SCORE, lead_source="Score__c", contact_source="Score__c", allow_push=False),
    MappingRow("notes", DataType.TEXT, kind=FieldKind.CUSTOM),  # local only (R1)
)
MAPPING = Mapping(version=1, rows=ROWS)
ON = PushPolicy(default_allow_push=True)
OFF = PushPolicy(default_allow_push=False)


def _crm_values(**values: Any) -> ContactValues:
    return ContactValues(values, {k: FieldMeta("crm", T0) for k in values})


def _decide(
    changes: dict[str, Any],
    *,
    contact: ContactState | None = None,
    policy: PushPolicy = ON,
    at: datetime = LATER,
    crm_create: str | None = None,
    mapping: Mapping = MAPPING,
):
    contact = contact or ContactState("Lead", "00Q000000000001", _crm_values(first_name="Ada"))
    merge = merge_local_changes(contact.values, changes, source="form", occurred_at=at)
    return decide_push(
        mapping=mapping, policy=policy, contact=contact, changes=changes, merge=merge, crm_create=crm_create
    )


# ------------------------------------------------------------- updates (R8, R11-R13)


def test_r8_an_existing_record_gets_a_mapped_changed_field() -> None:
    decision = _decide({"first_name": "Augusta"})
    assert decision.operation is Operation.UPDATE
    assert (decision.crm_object, decision.crm_id) == ("Lead", "00Q000000000001")
    assert decision.values == {"FirstName": "Augusta"}
    assert decision.reasons == {"first_name": Reason.SENT}


def test_r8_a_field_with_allow_push_off_is_not_sent() -> None:
    decision = _decide({"job_title": "CTO", "first_name": "Ada L."})
    assert decision.values == {"FirstName": "Ada L."}
    assert decision.reasons["job_title"] is Reason.ALLOW_PUSH_OFF


def test_r8_the_global_default_off_stops_fields_without_their_own_setting() -> None:
    decision = _decide({"first_name": "Augusta", "city": "London"}, policy=OFF)
    assert decision.values == {"City": "London"}
    assert decision.reasons["first_name"] is Reason.ALLOW_PUSH_OFF
    assert decision.reasons["city"] is Reason.SENT


def test_r8_a_score_cannot_be_turned_off_it_waits_for_the_outbound_job() -> None:
    decision = _decide({"score": 42}, policy=OFF)
    assert decision.reasons["score"] is Reason.DEFERRED
    assert decision.deferred == ("score",)
    assert decision.operation is Operation.NONE


def test_r11_opt_outs_are_deferred_to_the_outbound_job() -> None:
    decision = _decide({"opted_out": True, "first_name": "Augusta"})
    assert decision.deferred == ("opted_out",)
    assert decision.values == {"FirstName": "Augusta"}


def test_r11_an_opt_out_with_allow_push_off_is_neither_sent_nor_deferred() -> None:
    decision = _decide({"opted_out": True}, policy=OFF)
    assert decision.reasons["opted_out"] is Reason.ALLOW_PUSH_OFF
    assert decision.deferred == ()


def test_r1_unmapped_and_local_only_fields_are_never_sent() -> None:
    decision = _decide({"favourite_colour": "green", "notes": "met at the fair"})
    assert decision.operation is Operation.NONE
    assert decision.reasons == {"favourite_colour": Reason.NOT_MAPPED, "notes": Reason.NO_SOURCE}


def test_r1_a_field_without_a_source_on_the_records_object_is_not_sent() -> None:
    contact = ContactState("Contact", "003000000000001", _crm_values(first_name="Ada"))
    decision = _decide({"company": "Analytical Engines", "city": "London"}, contact=contact)
    assert decision.values == {"MailingCity": "London"}
    assert decision.reasons["company"] is Reason.NO_SOURCE


def test_r12_a_value_the_crm_already_holds_is_not_echoed() -> None:
    decision = _decide({"first_name": "Ada"})
    assert decision.reasons == {"first_name": Reason.FROM_CRM}
    assert decision.operation is Operation.NONE


def test_r13_a_crm_value_newer_than_the_event_is_kept() -> None:
    decision = _decide({"first_name": "Older"}, at=T0 - timedelta(seconds=1))
    assert decision.reasons == {"first_name": Reason.CRM_NEWER}
    assert decision.values == {}


def test_r13_on_a_tie_the_crm_value_is_kept() -> None:
    assert _decide({"first_name": "Tie"}, at=T0).reasons == {"first_name": Reason.CRM_NEWER}


def test_r13_an_event_older_than_a_stored_local_value_is_superseded() -> None:
    values = ContactValues({"first_name": "New"}, {"first_name": FieldMeta("form", LATER)})
    decision = _decide({"first_name": "Old"}, contact=ContactState("Lead", "00Q1", values), at=T0)
    assert decision.reasons == {"first_name": Reason.SUPERSEDED}


def test_an_unchanged_local_value_is_not_sent_again() -> None:
    values = ContactValues({"first_name": "Same"}, {"first_name": FieldMeta("form", T0)})
    decision = _decide({"first_name": "Same"}, contact=ContactState("Lead", "00Q1", values))
    assert decision.reasons == {"first_name": Reason.UNCHANGED}


def test_multi_text_values_go_to_the_crm_as_a_picklist() -> None:
    assert _decide({"product": ["a", "b"]}).values == {"Product__c": "a;b"}


# ------------------------------------------------------------- creation (R9, R10)


def _local_contact(**values: Any) -> ContactState:
    return ContactState(None, None, ContactValues(values, {k: FieldMeta("form", T0) for k in values}))


def test_r9_without_crm_create_a_contact_without_a_record_gets_nothing() -> None:
    decision = _decide({"first_name": "Ada", "xyz": 1}, contact=_local_contact(email="ada@example.com"))
    assert decision.operation is Operation.NONE
    assert decision.reasons == {"first_name": Reason.NO_CRM_RECORD, "xyz": Reason.NOT_MAPPED}


def test_r9_allow_push_does_not_limit_creation() -> None:
    contact = _local_contact(
        email="ada@example.com", job_title="Countess", score=7, opted_out=True, notes="x"
    )
    decision = _decide(
        {"last_name": "Lovelace", "company": "AE"}, contact=contact, policy=OFF, crm_create="Lead"
    )
    assert decision.operation is Operation.CREATE
    assert (decision.crm_object, decision.crm_id) == ("Lead", None)
    assert decision.values == {
        "Email": "ada@example.com",
        "LastName": "Lovelace",
        "Company": "AE",
        "Title": "Countess",
        "HasOptedOutOfEmail": True,
        "Score__c": 7,
    }
    assert decision.reasons["job_title"] is Reason.SENT
    assert decision.reasons["notes"] is Reason.NO_SOURCE
    assert decision.deferred == ()


def test_r9_a_created_contact_gets_only_fields_with_a_contact_source() -> None:
    decision = _decide(
        {"last_name": "Lovelace", "company": "AE"}, contact=_local_contact(), crm_create="Contact"
    )
    assert decision.values == {"LastName": "Lovelace"}
    assert decision.reasons["company"] is Reason.NO_SOURCE


def test_r9_crm_create_for_a_contact_already_in_the_crm_updates_it_instead() -> None:
    decision = _decide({"first_name": "Augusta"}, crm_create="Lead")
    assert decision.operation is Operation.UPDATE


# ------------------------------------------------------------- outbound (R11, R12, R23)


def test_r11_the_outbound_job_sends_local_scores_and_opt_outs() -> None:
    values = ContactValues(
        {"score": 50, "opted_out": True, "first_name": "Ada"},
        {k: FieldMeta("scoring", T0) for k in ("score", "opted_out", "first_name")},
    )
    decision = decide_outbound(mapping=MAPPING, policy=OFF, contact=ContactState("Lead", "00Q1", values))
    # The score goes whatever the policy (R8); the opt-out follows the global default here.
    assert decision.values == {"Score__c": 50}
    assert decision.reasons == {"score": Reason.SENT, "opted_out": Reason.ALLOW_PUSH_OFF}
    on = decide_outbound(mapping=MAPPING, policy=ON, contact=ContactState("Lead", "00Q1", values))
    assert on.values == {"Score__c": 50, "HasOptedOutOfEmail": True}


def test_r12_the_outbound_job_does_not_send_back_values_from_the_crm() -> None:
    contact = ContactState("Contact", "0031", _crm_values(score=3, opted_out=True))
    decision = decide_outbound(mapping=MAPPING, policy=ON, contact=contact)
    assert not decision.sends
    assert decision.reasons == {"score": Reason.FROM_CRM, "opted_out": Reason.FROM_CRM}


def test_r11_the_outbound_job_sends_nothing_to_a_contact_without_a_record() -> None:
    assert not decide_outbound(mapping=MAPPING, policy=ON, contact=_local_contact(score=3)).sends


def test_fold_writes_keeps_the_later_value() -> None:
    assert fold_writes({"A": 1, "B": 1}, {"B": 2}) == {"A": 1, "B": 2}


# ------------------------------------------------------------- properties

NAMES = [r.destination for r in ROWS] + ["unmapped_a"]
values_st = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(["a", "b", "c"]))
origin_st = st.sampled_from(["crm", "form", "scoring"])
time_st = st.sampled_from([T0 - timedelta(minutes=1), T0, LATER])


@st.composite
def contact_values(draw: st.DrawFn) -> ContactValues:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True))
    fields = {n: draw(values_st) for n in names}
    meta = {n: FieldMeta(draw(origin_st), draw(time_st)) for n in names}
    return ContactValues(fields, meta)


@st.composite
def mappings(draw: st.DrawFn) -> Mapping:
    rows = []
    for row in ROWS:
        if draw(st.booleans()):
            rows.append(
                MappingRow(
                    row.destination,
                    row.data_type,
                    row.kind,
                    row.lead_source if draw(st.booleans()) else None,
                    row.contact_source if draw(st.booleans()) else None,
                    draw(st.sampled_from([None, True, False])),
                )
            )
    return Mapping(version=1, rows=tuple(rows))


scenario = st.fixed_dictionaries(
    {
        "mapping": mappings(),
        "policy": st.builds(PushPolicy, st.booleans()),
        "crm_object": st.sampled_from([None, "Lead", "Contact"]),
        "values": contact_values(),
        "changes": st.dictionaries(st.sampled_from(NAMES), values_st, min_size=1),
        "at": time_st,
        "crm_create": st.sampled_from([None, "Lead", "Contact"]),
    }
)


def _run(s: dict[str, Any]):
    contact = ContactState(s["crm_object"], "X1" if s["crm_object"] else None, s["values"])
    merge = merge_local_changes(contact.values, s["changes"], source="form", occurred_at=s["at"])
    decision = decide_push(
        mapping=s["mapping"],
        policy=s["policy"],
        contact=contact,
        changes=s["changes"],
        merge=merge,
        crm_create=s["crm_create"],
    )
    return contact, merge, decision


@given(scenario)
def test_r10_the_only_operations_are_create_update_and_none(s: dict[str, Any]) -> None:
    contact, _, decision = _run(s)
    assert decision.operation in {Operation.CREATE, Operation.UPDATE, Operation.NONE}
    if decision.operation is Operation.CREATE:
        assert s["crm_create"] is not None and not contact.in_crm
        assert decision.crm_object == s["crm_create"]
    if decision.operation is Operation.UPDATE:
        assert contact.in_crm and decision.crm_id == contact.external_id
    assert decision.sends == bool(decision.values)


@given(scenario)
def test_every_changed_field_of_an_update_gets_exactly_one_reason(s: dict[str, Any]) -> None:
    contact, _, decision = _run(s)
    if contact.in_crm or s["crm_create"] is None:
        assert set(decision.reasons) == set(s["changes"])


@given(scenario)
def test_r8_r11_r12_r13_an_update_sends_only_allowed_new_local_immediate_values(s: dict[str, Any]) -> None:
    contact, merge, decision = _run(s)
    if not contact.in_crm:
        return
    mapping, policy = s["mapping"], s["policy"]
    sent = [n for n, r in decision.reasons.items() if r is Reason.SENT]
    assert len(decision.values) == len({mapping.row(n).source_for(contact.crm_object) for n in sent})
    for name in sent:
        row = mapping.row(name)
        assert row is not None and row.source_for(contact.crm_object) is not None
        assert row.is_score or (policy.default_allow_push if row.allow_push is None else row.allow_push)
        assert not is_scheduled_field(row)
        assert name in merge.changed
        assert not merge.values.meta[name].from_crm
    for name in decision.deferred:
        assert is_scheduled_field(mapping.row(name))


@given(scenario)
def test_r9_a_create_fills_every_mapped_field_with_a_source_whatever_allow_push(s: dict[str, Any]) -> None:
    contact, merge, decision = _run(s)
    if contact.in_crm or s["crm_create"] is None:
        if not contact.in_crm:
            assert decision.operation is Operation.NONE
        return
    expected = {
        row.source_for(s["crm_create"])
        for row in s["mapping"].rows
        if row.source_for(s["crm_create"]) and merge.values.fields.get(row.destination) is not None
    }
    assert set(decision.values) == expected


@given(scenario)
def test_r12_the_outbound_job_sends_only_local_scores_and_opt_outs(s: dict[str, Any]) -> None:
    contact = ContactState(s["crm_object"], "X1" if s["crm_object"] else None, s["values"])
    decision = decide_outbound(mapping=s["mapping"], policy=s["policy"], contact=contact)
    for name, reason in decision.reasons.items():
        row = s["mapping"].row(name)
        assert is_scheduled_field(row)
        if reason is Reason.SENT:
            assert not contact.values.meta[name].from_crm
            assert row.source_for(contact.crm_object) in decision.values


@pytest.mark.parametrize("policy", [ON, OFF])
def test_r8_scores_go_out_under_any_policy_and_any_row_setting(policy: PushPolicy) -> None:
    values = ContactValues({"score": 9}, {"score": FieldMeta("scoring", T0)})
    decision = decide_outbound(mapping=MAPPING, policy=policy, contact=ContactState("Lead", "1", values))
    assert decision.values == {"Score__c": 9}
