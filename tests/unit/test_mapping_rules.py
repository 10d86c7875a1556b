"""The mapping checks: R1–R6 and R8, one test per rule and edge, plus properties."""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import given
from hypothesis import strategies as st

from crmsync.common.crm.providers import provider_named
from crmsync.common.crm.roles import PERSON_KINDS
from crmsync.common.crm.salesforce import DEFAULT_SALESFORCE_ROWS, compatible_data_types
from crmsync.common.domain.fields import STANDARD_FIELDS, DataType
from crmsync.common.domain.mapping import FieldKind, MappingRow, PushPolicy
from crmsync.common.domain.mapping_rules import Violation, check_mapping


@dataclass(frozen=True)
class F:
    """A described field as the Salesforce connector sets it: what it fills from its type."""

    type: str
    updateable: bool = True
    fills: frozenset[DataType] | None = None

    def __post_init__(self) -> None:
        if self.fills is None:
            object.__setattr__(self, "fills", compatible_data_types(self.type))


_COMMON = {
    "Id": F("id", updateable=False),
    "Email": F("email"),
    "FirstName": F("string"),
    "LastName": F("string"),
    "Title": F("string"),
    "Phone": F("phone"),
    "MobilePhone": F("phone"),
    "LeadSource": F("picklist"),
    "HasOptedOutOfEmail": F("boolean"),
    "Marketing_Score__c": F("double"),
    "Birthdate": F("date"),
    "LastActivityDate": F("date", updateable=False),
    "SystemModstamp": F("datetime", updateable=False),
    "Products__c": F("multipicklist"),
    "NumberOfEmployees": F("int"),
}
LEAD = {
    **_COMMON,
    "Company": F("string"),
    "Street": F("textarea"),
    "City": F("string"),
    "State": F("string"),
    "PostalCode": F("string"),
    "Country": F("string"),
    "Website": F("url"),
    "Industry": F("picklist"),
    "Status": F("picklist"),
    "IsConverted": F("boolean", updateable=False),
}
CONTACT = {
    **_COMMON,
    "MailingStreet": F("textarea"),
    "MailingCity": F("string"),
    "MailingState": F("string"),
    "MailingPostalCode": F("string"),
    "MailingCountry": F("string"),
}


TWO_WAY = PushPolicy()
SALESFORCE_EMAIL = {kind: provider_named("salesforce").email_field(kind) for kind in PERSON_KINDS}


def check(rows, *, policy=TWO_WAY, lead=LEAD, contact=CONTACT) -> list[Violation]:
    return check_mapping(
        list(rows), lead_describe=lead, contact_describe=contact, policy=policy, email_fields=SALESFORCE_EMAIL
    )


def rules(violations: list[Violation]) -> set[tuple[int | None, str]]:
    return {(v.row_index, v.rule) for v in violations}


def custom(name: str, data_type: DataType, lead=None, contact=None, allow_push=None) -> MappingRow:
    return MappingRow(name, data_type, FieldKind.CUSTOM, lead, contact, allow_push)


def test_r7_the_default_salesforce_mapping_passes_every_check() -> None:
    assert check(DEFAULT_SALESFORCE_ROWS) == []


def test_r1_a_destination_appears_once() -> None:
    rows = [*DEFAULT_SALESFORCE_ROWS, DEFAULT_SALESFORCE_ROWS[1]]
    violations = check(rows)
    assert rules(violations) == {(len(rows) - 1, "R1")}
    assert "already mapped in row 1" in violations[0].message


def test_r1_a_standard_destination_must_be_in_the_catalogue() -> None:
    rows = [*DEFAULT_SALESFORCE_ROWS, MappingRow("shoe_size", DataType.NUMBER)]
    assert rules(check(rows)) == {(len(rows) - 1, "R1")}


def test_r1_a_standard_field_keeps_its_catalogue_data_type() -> None:
    rows = [*DEFAULT_SALESFORCE_ROWS, MappingRow("time_zone", DataType.NUMBER)]
    assert rules(check(rows)) == {(len(rows) - 1, "R1")}


def test_r1_a_row_without_source_is_local_only_and_allowed() -> None:
    rows = [*DEFAULT_SALESFORCE_ROWS, MappingRow("segment", DataType.TEXT), custom("Notes", DataType.TEXT)]
    assert check(rows) == []


def test_r2_email_must_be_mapped() -> None:
    rows = [r for r in DEFAULT_SALESFORCE_ROWS if r.destination != "email"]
    assert rules(check(rows)) == {(None, "R2")}


def test_r2_lead_and_contact_email_must_map_to_email_address() -> None:
    rows = list(DEFAULT_SALESFORCE_ROWS)
    rows[0] = replace(rows[0], lead_source=None, contact_source="Email")
    violations = check(rows)
    assert rules(violations) == {(0, "R2")}
    assert "Lead.Email" in violations[0].message
    rows[0] = replace(rows[0], lead_source="Email", contact_source=None)
    assert [v.message for v in check(rows)] == ["E-mail Address must map from Contact.Email"]


def test_r2_email_address_maps_from_the_email_field_the_provider_names() -> None:
    rows = list(DEFAULT_SALESFORCE_ROWS)
    rows[0] = replace(rows[0], lead_source="emailaddress1", contact_source="emailaddress1")
    lead = {**LEAD, "emailaddress1": F("email")}
    contact = {**CONTACT, "emailaddress1": F("email")}
    email_fields = {"Lead": "emailaddress1", "Contact": "emailaddress1"}
    assert (
        check_mapping(
            rows, lead_describe=lead, contact_describe=contact, policy=TWO_WAY, email_fields=email_fields
        )
        == []
    )
    violations = check_mapping(
        list(DEFAULT_SALESFORCE_ROWS),
        lead_describe=lead,
        contact_describe=contact,
        policy=TWO_WAY,
        email_fields=email_fields,
    )
    assert [v.message for v in violations] == [
        "E-mail Address must map from Lead.emailaddress1",
        "E-mail Address must map from Contact.emailaddress1",
    ]


def test_r4_a_field_fills_what_its_connector_says_not_what_its_type_text_suggests() -> None:
    lead = {**LEAD, "Rating": F("picklist", fills=frozenset({DataType.NUMBER}))}
    rows = [*DEFAULT_SALESFORCE_ROWS, custom("Rating", DataType.NUMBER, lead="Rating")]
    assert check(rows, lead=lead) == []
    rows = [*DEFAULT_SALESFORCE_ROWS, custom("Rating", DataType.TEXT, lead="Rating")]
    assert rules(check(rows, lead=lead)) == {(len(rows) - 1, "R4")}


def test_r3_at_least_one_score_field_must_be_mapped_to_the_crm() -> None:
    rows = [r for r in DEFAULT_SALESFORCE_ROWS if r.destination != "score"]
    assert rules(check(rows)) == {(None, "R3")}


def test_r3_a_local_only_score_does_not_count() -> None:
    rows = [r for r in DEFAULT_SALESFORCE_ROWS if r.destination != "score"]
    rows.append(MappingRow("score", DataType.SCORE))
    assert rules(check(rows)) == {(None, "R3")}


def test_r3_a_custom_score_field_counts() -> None:
    rows = [r for r in DEFAULT_SALESFORCE_ROWS if r.destination != "score"]
    rows.append(custom("Lead_Score", DataType.SCORE, lead="Marketing_Score__c"))
    assert check(rows) == []


def test_r4_a_source_must_exist_in_the_crm_describe() -> None:
    rows = [*DEFAULT_SALESFORCE_ROWS, custom("Shoe", DataType.TEXT, lead="Shoe__c", contact="Shoe__c")]
    violations = check(rows)
    assert [(v.row_index, v.rule) for v in violations] == [(len(rows) - 1, "R4")] * 2
    assert {v.message for v in violations} == {
        "Lead.Shoe__c does not exist in the CRM",
        "Contact.Shoe__c does not exist in the CRM",
    }


def test_r4_contact_address_fields_are_not_lead_address_fields() -> None:
    rows = list(DEFAULT_SALESFORCE_ROWS)
    index = next(i for i, r in enumerate(rows) if r.destination == "street")
    rows[index] = replace(rows[index], contact_source="Street")
    assert rules(check(rows)) == {(index, "R4")}


def test_r4_the_destination_type_must_be_compatible_with_the_crm_type() -> None:
    rows = [*DEFAULT_SALESFORCE_ROWS, custom("Born", DataType.DATETIME, contact="Birthdate")]
    violations = check(rows)
    assert rules(violations) == {(len(rows) - 1, "R4")}
    assert "CRM type date" in violations[0].message


def test_r4_a_number_may_fill_a_number_or_a_score() -> None:
    rows = [
        *DEFAULT_SALESFORCE_ROWS,
        custom("Employees", DataType.NUMBER, lead="NumberOfEmployees"),
        custom("Employee_Score", DataType.SCORE, contact="NumberOfEmployees"),
        custom("Employee_Text", DataType.TEXT, contact="NumberOfEmployees"),
    ]
    assert rules(check(rows)) == {(len(rows) - 1, "R4")}


def test_r4_each_crm_type_fills_the_types_of_the_design() -> None:
    assert compatible_data_types("email") >= {DataType.EMAIL}
    assert compatible_data_types("boolean") == {DataType.BOOLEAN}
    assert compatible_data_types("date") == {DataType.DATE}
    assert compatible_data_types("datetime") == {DataType.DATETIME}
    for numeric in ("double", "int", "currency", "percent"):
        assert compatible_data_types(numeric) == {DataType.NUMBER, DataType.SCORE}
    assert compatible_data_types("multipicklist") == {DataType.MULTI_TEXT}
    for text in ("string", "textarea", "picklist", "phone", "url"):
        assert compatible_data_types(text) == {DataType.TEXT}
    assert compatible_data_types("base64") == set()


def test_r4_a_field_that_may_push_must_be_updateable() -> None:
    rows = [*DEFAULT_SALESFORCE_ROWS, custom("Last_Activity", DataType.DATE, contact="LastActivityDate")]
    violations = check(rows)
    assert rules(violations) == {(len(rows) - 1, "R4")}
    assert "not updateable" in violations[0].message


def test_r4_a_read_only_field_is_fine_when_push_is_off_for_it_or_by_default() -> None:
    row = custom("Last_Activity", DataType.DATE, contact="LastActivityDate", allow_push=False)
    assert check([*DEFAULT_SALESFORCE_ROWS, row]) == []
    by_default = replace(row, allow_push=None)
    assert check([*DEFAULT_SALESFORCE_ROWS, by_default], policy=PushPolicy(default_allow_push=False)) == []
    assert rules(check([*DEFAULT_SALESFORCE_ROWS, replace(row, allow_push=True)], policy=PushPolicy(False)))


def test_r4_a_read_only_score_always_breaks_the_rule() -> None:
    describe = {**CONTACT, "Marketing_Score__c": F("double", updateable=False)}
    violations = check(DEFAULT_SALESFORCE_ROWS, contact=describe, policy=PushPolicy(False))
    assert [v.rule for v in violations] == ["R4"]


def test_r4_is_left_unchecked_without_a_describe() -> None:
    rows = [*DEFAULT_SALESFORCE_ROWS, custom("Shoe", DataType.TEXT, lead="Shoe__c")]
    assert check(rows, lead=None, contact=None) == []


def test_r5_sales_owner_fields_take_no_source() -> None:
    rows = [*DEFAULT_SALESFORCE_ROWS, MappingRow("sales_owner_email", DataType.EMAIL, lead_source="Email")]
    assert rules(check(rows)) == {(len(rows) - 1, "R5")}
    assert check([*DEFAULT_SALESFORCE_ROWS, MappingRow("sales_owner_email", DataType.EMAIL)]) == []


def test_r6_custom_fields_take_each_of_the_eight_data_types() -> None:
    sources = {
        DataType.BOOLEAN: "HasOptedOutOfEmail",
        DataType.DATE: "Birthdate",
        DataType.DATETIME: "SystemModstamp",
        DataType.TEXT: "Title",
        DataType.NUMBER: "NumberOfEmployees",
        DataType.SCORE: "Marketing_Score__c",
        DataType.EMAIL: "Email",
        DataType.MULTI_TEXT: "Products__c",
    }
    rows = [
        custom(f"C_{t.value}", t, contact=src, allow_push=False if t != DataType.SCORE else None)
        for t, src in sources.items()
    ]
    assert check([*DEFAULT_SALESFORCE_ROWS, *rows]) == []


def test_r6_a_custom_field_needs_a_valid_name() -> None:
    for bad in ("", "9lives", "has space", "x" * 81):
        violations = check([*DEFAULT_SALESFORCE_ROWS, custom(bad, DataType.TEXT)])
        assert [v.rule for v in violations] == ["R6"], bad


def test_r6_a_custom_field_may_not_reuse_a_standard_name() -> None:
    violations = check([*DEFAULT_SALESFORCE_ROWS, custom("time_zone", DataType.TEXT)])
    assert [v.rule for v in violations] == ["R6"]


def test_r8_a_score_row_cannot_be_toggled_off() -> None:
    rows = list(DEFAULT_SALESFORCE_ROWS)
    index = next(i for i, r in enumerate(rows) if r.destination == "score")
    rows[index] = replace(rows[index], allow_push=False)
    violations = check(rows)
    assert rules(violations) == {(index, "R8")}
    assert "remove its mapping" in violations[0].message


def test_r8_other_rows_may_be_toggled_either_way() -> None:
    rows = [replace(r, allow_push=False) if not r.is_score else r for r in DEFAULT_SALESFORCE_ROWS]
    assert check(rows) == []


def test_every_broken_row_and_rule_is_reported_at_once() -> None:
    rows = [r for r in DEFAULT_SALESFORCE_ROWS if r.destination not in ("email", "score")]
    rows.append(custom("Bad", DataType.BOOLEAN, lead="Nope__c"))
    assert rules(check(rows)) == {(None, "R2"), (None, "R3"), (len(rows) - 1, "R4")}


_standard_rows = st.sampled_from(STANDARD_FIELDS).map(lambda f: MappingRow(f.key, f.data_type))


@given(st.permutations(DEFAULT_SALESFORCE_ROWS))
def test_r1_row_order_does_not_matter(rows) -> None:
    assert check(rows) == []


@given(st.lists(_standard_rows, max_size=12))
def test_local_only_standard_rows_never_break_a_valid_mapping(extra) -> None:
    destinations = {r.destination for r in DEFAULT_SALESFORCE_ROWS}
    fresh = {r.destination: r for r in extra if r.destination not in destinations}
    assert check([*DEFAULT_SALESFORCE_ROWS, *fresh.values()]) == []


@given(st.lists(_standard_rows, min_size=1, max_size=8))
def test_r1_each_repeat_of_a_destination_is_named(extra) -> None:
    rows = [*DEFAULT_SALESFORCE_ROWS, *extra]
    expected = set()
    seen = set()
    for index, row in enumerate(rows):
        if row.destination in seen:
            expected.add(index)
        seen.add(row.destination)
    flagged = {v.row_index for v in check(rows) if v.rule == "R1"}
    assert flagged == expected


@given(st.sampled_from(list(DataType)), st.sampled_from(sorted(LEAD)))
def test_r4_a_custom_row_passes_exactly_when_types_are_compatible(data_type, source) -> None:
    row = custom("Probe", data_type, lead=source, allow_push=None if data_type == DataType.SCORE else False)
    violations = check([*DEFAULT_SALESFORCE_ROWS, row])
    compatible = data_type in compatible_data_types(LEAD[source].type)
    updateable_enough = data_type != DataType.SCORE or LEAD[source].updateable
    assert (violations == []) == (compatible and updateable_enough)
    assert all(v.rule == "R4" and v.row_index == len(DEFAULT_SALESFORCE_ROWS) for v in violations)
