"""The mapping a new Salesforce account starts with (R7), in Salesforce's field names."""

from __future__ import annotations

from crmsync.common.domain.mapping import Mapping, MappingRow, standard_row

# The e-mail field of Leads and Contacts, which R2 pins to E-mail Address.
EMAIL_FIELD = "Email"
# The score field the crmsync Salesforce package adds.
SCORE_FIELD = "Marketing_Score__c"

# A Contact's company comes from its Account's name (R5), so `company` has no Contact source.
DEFAULT_SALESFORCE_ROWS: tuple[MappingRow, ...] = (
    standard_row("email", EMAIL_FIELD, EMAIL_FIELD),
    standard_row("first_name", "FirstName", "FirstName"),
    standard_row("last_name", "LastName", "LastName"),
    standard_row("company", "Company", None),
    standard_row("job_title", "Title", "Title"),
    standard_row("business_phone", "Phone", "Phone"),
    standard_row("mobile_phone", "MobilePhone", "MobilePhone"),
    standard_row("street", "Street", "MailingStreet"),
    standard_row("city", "City", "MailingCity"),
    standard_row("state", "State", "MailingState"),
    standard_row("postal_code", "PostalCode", "MailingPostalCode"),
    standard_row("country", "Country", "MailingCountry"),
    standard_row("website", "Website", None),
    standard_row("industry", "Industry", None),
    standard_row("lead_source", "LeadSource", "LeadSource"),
    standard_row("status", "Status", None),
    standard_row("opted_out", "HasOptedOutOfEmail", "HasOptedOutOfEmail"),
    standard_row("score", SCORE_FIELD, SCORE_FIELD),
)


def default_salesforce_mapping() -> Mapping:
    """Returns version 1 of a new Salesforce account's mapping."""
    return Mapping(version=1, rows=DEFAULT_SALESFORCE_ROWS)
