"""CRM records into contact values (R1, R5, R17): mapping, related objects, conversions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmsync.common.crm.roles import DealRoles, RecordRoles
from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import FieldKind, Mapping, MappingRow, default_salesforce_mapping
from crmsync.puller.handlers.crm_records import (
    MappingMismatch,
    check_mapping,
    fields_to_read,
    json_value,
    map_deal,
    map_record,
)
from tests.unit.puller_fakes import ROLES

STAMP = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
MAPPING = default_salesforce_mapping()


def test_r5_a_contact_s_account_name_fills_company_and_the_owner_fills_the_sales_owner() -> None:
    record = {
        "Id": "003A",
        "SystemModstamp": STAMP,
        "Email": "ada@example.com",
        "LastName": "Lovelace",
        "AccountId": "001A",
        "Account": {"Name": "Analytical Engines"},
        "OwnerId": "005A",
        "Owner": {"Name": "Sam Seller", "Email": "sam@example.com"},
    }
    mapped = map_record(mapping=MAPPING, roles=ROLES, entity="Contact", record=record)
    assert mapped.values["company"] == "Analytical Engines"
    assert (mapped.values["sales_owner_name"], mapped.values["sales_owner_email"]) == (
        "Sam Seller",
        "sam@example.com",
    )
    assert (mapped.external_id, mapped.crm_object, mapped.modstamp) == ("003A", "Contact", STAMP)
    assert (mapped.account_external_id, mapped.owner_external_id) == ("001A", "005A")


def test_r1_only_rows_with_a_source_on_the_entity_are_filled_and_missing_values_are_none() -> None:
    record = {"Id": "00QA", "SystemModstamp": STAMP, "Company": "Acme", "Owner": None}
    mapped = map_record(mapping=MAPPING, roles=ROLES, entity="Lead", record=record)
    lead_rows = {r.destination for r in MAPPING.rows if r.lead_source}
    assert set(mapped.values) == lead_rows | {"sales_owner_name", "sales_owner_email"}
    assert mapped.values["company"] == "Acme"
    assert mapped.values["email"] is None


def test_r17_a_converted_lead_names_its_contact() -> None:
    record = {"Id": "00QA", "SystemModstamp": STAMP, "IsConverted": True, "ConvertedContactId": "003B"}
    assert (
        map_record(mapping=MAPPING, roles=ROLES, entity="Lead", record=record).converted_contact_id == "003B"
    )
    record["IsConverted"] = False
    assert map_record(mapping=MAPPING, roles=ROLES, entity="Lead", record=record).converted_contact_id is None


def test_a_mapped_field_missing_from_the_crm_names_the_field_and_the_row() -> None:
    described = {"Id", "Email", "FirstName"}
    with pytest.raises(MappingMismatch, match=r"'LastName'.*'last_name'"):
        check_mapping(mapping=MAPPING, entity="Contact", described_fields=described)


def test_the_fields_read_are_the_mapped_sources_plus_identity_related_objects_and_conversion() -> None:
    fields = fields_to_read(
        mapping=MAPPING, roles=ROLES, entity="Lead", described_fields={"IsConverted", "ConvertedContactId"}
    )
    assert fields[:2] == ["Id", "SystemModstamp"]
    assert {"Owner.Name", "Owner.Email", "IsConverted", "ConvertedContactId", "Email"} <= set(fields)
    assert len(fields) == len(set(fields))
    contact = fields_to_read(mapping=MAPPING, roles=ROLES, entity="Contact", described_fields=set())
    assert "Account.Name" in contact and "IsConverted" not in contact


def test_values_are_stored_as_json_dates_as_iso_text_and_multi_text_as_a_list() -> None:
    assert json_value(date(2026, 1, 2), DataType.DATE) == "2026-01-02"
    assert json_value(STAMP, DataType.DATETIME) == "2026-11-28T10:00:00+00:00"
    assert json_value("a;b;c", DataType.MULTI_TEXT) == ["a", "b", "c"]
    assert json_value("4.5", DataType.SCORE) == 4.5
    row = MappingRow("product", DataType.MULTI_TEXT, FieldKind.STANDARD, lead_source="Product__c")
    mapped = map_record(
        mapping=Mapping(1, (row,)),
        roles=ROLES,
        entity="Lead",
        record={"Id": "x", "SystemModstamp": STAMP, "Product__c": "a;b"},
    )
    assert mapped.values["product"] == ["a", "b"]


@given(value=st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()))
def test_plain_values_pass_through_unchanged_for_text_fields(value) -> None:
    assert json_value(value, DataType.TEXT) == value


# A CRM of other names: its own id, time and owner fields, and a lead that names the contact it
# became without a separate flag.
OTHER_ROLES = RecordRoles(
    id="personid",
    modified_at="modifiedon",
    owner_id="ownerid",
    owner_name="owner.fullname",
    owner_email="owner.mail",
    company_id="companyid",
    company_name="company.title",
    converted=None,
    converted_to="became",
    deal=ROLES.deal,
)


def test_r5_r17_records_are_read_through_the_connector_s_roles_whatever_its_names() -> None:
    contact = {
        "personid": "c-1",
        "modifiedon": STAMP,
        "LastName": "Lovelace",
        "companyid": "a-1",
        "company": {"title": "Analytical Engines"},
        "ownerid": "u-1",
        "owner": {"fullname": "Sam Seller", "mail": "sam@example.com"},
    }
    mapped = map_record(mapping=MAPPING, roles=OTHER_ROLES, entity="Contact", record=contact)
    assert (mapped.external_id, mapped.modstamp, mapped.account_external_id) == ("c-1", STAMP, "a-1")
    assert mapped.values["company"] == "Analytical Engines"
    assert (mapped.owner_external_id, mapped.values["sales_owner_email"]) == ("u-1", "sam@example.com")
    lead = {"personid": "l-1", "modifiedon": STAMP.isoformat(), "became": "c-1"}
    assert (
        map_record(mapping=MAPPING, roles=OTHER_ROLES, entity="Lead", record=lead).converted_contact_id
        == "c-1"
    )
    lead["became"] = None
    assert (
        map_record(mapping=MAPPING, roles=OTHER_ROLES, entity="Lead", record=lead).converted_contact_id
        is None
    )
    fields = fields_to_read(mapping=MAPPING, roles=OTHER_ROLES, entity="Lead", described_fields={"became"})
    assert fields[:2] == ["personid", "modifiedon"] and "became" in fields and "IsConverted" not in fields


def test_r5_a_deal_is_read_through_the_deal_roles_its_stage_kept_as_text() -> None:
    roles = DealRoles(
        id="Id",
        modified_at="modifiedon",
        name="name",
        stage="statuscode",
        amount="estimatedvalue",
        close_date="estimatedclosedate",
        company_id="_parentaccountid_value",
        contact_id="_parentcontactid_value",
    )
    record = {
        "Id": "d-1",
        "modifiedon": STAMP.isoformat(),
        "name": "Renewal",
        "statuscode": 3,  # an option's number
        "estimatedvalue": 1200.5,
        "estimatedclosedate": "2026-12-01",
        "_parentaccountid_value": "a-1",
        "_parentcontactid_value": "c-1",
    }
    deal = map_deal(roles, record)
    assert (deal.external_id, deal.modified_at, deal.name, deal.stage) == ("d-1", STAMP, "Renewal", "3")
    assert (deal.amount, deal.close_date) == (Decimal("1200.5"), date(2026, 12, 1))
    assert (deal.company_external_id, deal.contact_external_id) == ("a-1", "c-1")
    assert map_deal(roles, {"Id": "d-2", "modifiedon": STAMP}).amount is None
