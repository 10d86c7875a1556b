"""The role vocabulary: what each connector says its records' fields carry."""

from __future__ import annotations

import pytest

from crmsync.common.crm.dynamics import DYNAMICS_ROLES
from crmsync.common.crm.roles import COMPANY, DEAL, OWNER, PERSON_KINDS, RecordRoles, role_value
from crmsync.common.crm.salesforce._roles import SALESFORCE_ROLES
from crmsync.common.domain.mapping import CrmObject

ROLES = pytest.mark.parametrize("roles", [SALESFORCE_ROLES, DYNAMICS_ROLES], ids=["salesforce", "dynamics"])


def test_r17_leads_come_first_among_the_person_kinds() -> None:
    assert PERSON_KINDS == (CrmObject.LEAD, CrmObject.CONTACT)
    assert (COMPANY, OWNER, DEAL) == ("Account", "User", "Opportunity")


def test_role_value_follows_a_dotted_path_and_is_none_where_it_breaks() -> None:
    record = {"Id": "1", "Owner": {"Name": "Grace", "Manager": None}, "Account": None}
    assert role_value(record, "Id") == "1"
    assert role_value(record, "Owner.Name") == "Grace"
    assert role_value(record, "Owner.Manager.Name") is None
    assert role_value(record, "Account.Name") is None
    assert role_value(record, "Missing") is None


@ROLES
def test_a_lead_reads_its_identity_owner_and_conversion_and_a_contact_its_company(roles: RecordRoles) -> None:
    lead, contact = roles.person_fields(CrmObject.LEAD), roles.person_fields(CrmObject.CONTACT)
    common = (roles.id, roles.modified_at, roles.owner_id, roles.owner_name, roles.owner_email)
    assert lead[:5] == common and contact[:5] == common
    assert set(lead[5:]) == {roles.converted, roles.converted_to}
    assert set(contact[5:]) == {roles.company_id, roles.company_name}
    assert len(set(lead)) == len(lead) and len(set(contact)) == len(contact)


@ROLES
def test_a_deal_reads_every_deal_role_once(roles: RecordRoles) -> None:
    deal = roles.deal
    assert set(deal.fields) == {
        deal.id, deal.modified_at, deal.name, deal.stage, deal.amount, deal.close_date,
        deal.company_id, deal.contact_id,
    }  # fmt: skip


def test_dynamics_roles_name_none_of_salesforce_s_fields() -> None:
    salesforce_only = {"SystemModstamp", "IsConverted", "ConvertedContactId"}
    names = {*DYNAMICS_ROLES.person_fields(CrmObject.LEAD), *DYNAMICS_ROLES.person_fields(CrmObject.CONTACT)}
    assert not names & salesforce_only
    assert not set(DYNAMICS_ROLES.deal.fields) & salesforce_only
