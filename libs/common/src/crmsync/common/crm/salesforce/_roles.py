"""Which Salesforce fields carry the product's roles. A pure data table."""

from __future__ import annotations

from crmsync.common.crm.roles import DealRoles, RecordRoles

SALESFORCE_ROLES = RecordRoles(
    id="Id",
    modified_at="SystemModstamp",
    owner_id="OwnerId",
    owner_name="Owner.Name",
    owner_email="Owner.Email",
    company_id="AccountId",
    company_name="Account.Name",
    converted="IsConverted",
    converted_to="ConvertedContactId",
    deal=DealRoles(
        id="Id",
        modified_at="SystemModstamp",
        name="Name",
        stage="StageName",
        amount="Amount",
        close_date="CloseDate",
        company_id="AccountId",
        contact_id="ContactId",
    ),
)
