"""The mapping a new Dynamics 365 account starts with (R7), in Dataverse's column names."""

from __future__ import annotations

from crmsync.common.crm.dynamics._entities import OPTED_OUT
from crmsync.common.domain.fields import STANDARD_FIELDS_BY_KEY
from crmsync.common.domain.mapping import FieldKind, Mapping, MappingRow

# The column the crmsync solution adds to leads and contacts for the primary score
# (`crmsync_` is the solution publisher's prefix), as Marketing_Score__c on Salesforce.
SCORE_COLUMN = "crmsync_marketingscore"
# The e-mail of leads and contacts, the field R2 pins to E-mail Address: the role field
# `Email`, read and written as their `emailaddress1` column.
EMAIL_FIELD = "Email"


def _row(destination: str, lead: str | None, contact: str | None) -> MappingRow:
    data_type = STANDARD_FIELDS_BY_KEY[destination].data_type
    return MappingRow(destination, data_type, FieldKind.STANDARD, lead_source=lead, contact_source=contact)


# A contact's company comes from its parent account's name (R5), so `company` has no
# contact source; `OptedOut` is donotemail or donotbulkemail (R23).
DEFAULT_DYNAMICS_ROWS: tuple[MappingRow, ...] = (
    _row("email", EMAIL_FIELD, EMAIL_FIELD),
    _row("first_name", "firstname", "firstname"),
    _row("last_name", "lastname", "lastname"),
    _row("company", "companyname", None),
    _row("job_title", "jobtitle", "jobtitle"),
    _row("business_phone", "telephone1", "telephone1"),
    _row("mobile_phone", "mobilephone", "mobilephone"),
    _row("street", "address1_line1", "address1_line1"),
    _row("city", "address1_city", "address1_city"),
    _row("state", "address1_stateorprovince", "address1_stateorprovince"),
    _row("postal_code", "address1_postalcode", "address1_postalcode"),
    _row("country", "address1_country", "address1_country"),
    _row("website", "websiteurl", None),
    _row("industry", "industrycode", None),
    _row("lead_source", "leadsourcecode", None),
    _row("status", "statuscode", None),
    _row("opted_out", OPTED_OUT, OPTED_OUT),
    _row("score", SCORE_COLUMN, SCORE_COLUMN),
)


def default_dynamics_mapping() -> Mapping:
    """Returns version 1 of a new Dynamics 365 account's mapping."""
    return Mapping(version=1, rows=DEFAULT_DYNAMICS_ROWS)
