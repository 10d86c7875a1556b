"""Which fields of the Dataverse connector's records carry the product's roles. A pure data table.

`Id`, `OwnerId`, `Owner.*`, `AccountId` and `Account.*` are the connector's own role fields
(filled from the table's primary id and its lookups); `modifiedon` is Dataverse's column;
`Qualified` and `QualifiedContactId` are read from a lead's statecode and parent contact.
"""

from __future__ import annotations

from crmsync.common.crm.dynamics._entities import MODIFIED_ON, QUALIFIED, QUALIFIED_CONTACT_ID
from crmsync.common.crm.roles import DealRoles, RecordRoles

DYNAMICS_ROLES = RecordRoles(
    id="Id",
    modified_at=MODIFIED_ON,
    owner_id="OwnerId",
    owner_name="Owner.Name",
    owner_email="Owner.Email",
    company_id="AccountId",
    company_name="Account.Name",
    converted=QUALIFIED,
    converted_to=QUALIFIED_CONTACT_ID,
    deal=DealRoles(
        id="Id",
        modified_at=MODIFIED_ON,
        name="name",
        stage="statuscode",
        amount="estimatedvalue",
        close_date="estimatedclosedate",
        company_id="_parentaccountid_value",
        contact_id="_parentcontactid_value",
    ),
)
