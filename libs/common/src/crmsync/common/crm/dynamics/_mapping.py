"""The mapping a new Dynamics 365 account starts with (R7), in Dataverse's column names."""

from __future__ import annotations

from crmsync.common.crm.dynamics._entities import OPTED_OUT
from crmsync.common.domain.mapping import Mapping, MappingRow, standard_row

# The column the crmsync solution adds to leads and contacts for the primary score
# (`crmsync_` is the solution publisher's prefix), as Marketing_Score__c on Salesforce.
SCORE_COLUMN = "crmsync_marketingscore"
# The e-mail of leads and contacts, the field R2 pins to E-mail Address: the role field
# `Email`, read and written as their `emailaddress1` column.
EMAIL_FIELD = "Email"


# A contact's company comes from its parent account's name (R5), so `company` has no
# contact source; `OptedOut` is donotemail or donotbulkemail (R23).
DEFAULT_DYNAMICS_ROWS: tuple[MappingRow, ...] = (
    standard_row("email", EMAIL_FIELD, EMAIL_FIELD),
    standard_row("first_name", "firstname", "firstname"),
    standard_row("last_name", "lastname", "lastname"),
    standard_row("company", "companyname", None),
    standard_row("job_title", "jobtitle", "jobtitle"),
    standard_row("business_phone", "telephone1", "telephone1"),
    standard_row("mobile_phone", "mobilephone", "mobilephone"),
    standard_row("street", "address1_line1", "address1_line1"),
    standard_row("city", "address1_city", "address1_city"),
    standard_row("state", "address1_stateorprovince", "address1_stateorprovince"),
    standard_row("postal_code", "address1_postalcode", "address1_postalcode"),
    standard_row("country", "address1_country", "address1_country"),
    standard_row("website", "websiteurl", None),
    standard_row("industry", "industrycode", None),
    standard_row("lead_source", "leadsourcecode", None),
    standard_row("status", "statuscode", None),
    standard_row("opted_out", OPTED_OUT, OPTED_OUT),
    standard_row("score", SCORE_COLUMN, SCORE_COLUMN),
)


def default_dynamics_mapping() -> Mapping:
    """Returns version 1 of a new Dynamics 365 account's mapping."""
    return Mapping(version=1, rows=DEFAULT_DYNAMICS_ROWS)
