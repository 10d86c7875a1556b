"""The mapping a new Salesforce account starts with (R7), in Salesforce's field names."""

from __future__ import annotations

from crmsync.common.domain.mapping import DEFAULT_SALESFORCE_ROWS, Mapping

# The e-mail field of Leads and Contacts, which R2 pins to E-mail Address.
EMAIL_FIELD = "Email"

__all__ = ["DEFAULT_SALESFORCE_ROWS", "EMAIL_FIELD", "default_salesforce_mapping"]


def default_salesforce_mapping() -> Mapping:
    """Returns version 1 of a new Salesforce account's mapping."""
    return Mapping(version=1, rows=DEFAULT_SALESFORCE_ROWS)
