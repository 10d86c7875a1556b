"""Salesforce over its REST and Bulk API 2.0: the production CrmConnector.

Values come back typed from each object's describe, the same for REST and Bulk:
bool, int, float, `datetime.date`, UTC-aware `datetime`, str; empty is None.
"""

from crmsync.common.crm.salesforce._config import (
    AUTH_METHODS,
    AuthMethod,
    ConnectorOptions,
    SalesforceCredentials,
)
from crmsync.common.crm.salesforce._connection import (
    DEFAULT_API_VERSION,
    PROVIDER,
    connector_for,
    credentials_from_connection,
)
from crmsync.common.crm.salesforce._connector import SalesforceConnector
from crmsync.common.crm.salesforce._errors import DeletedFeedWindowExceeded
from crmsync.common.crm.salesforce._mapping import (
    DEFAULT_SALESFORCE_ROWS,
    EMAIL_FIELD,
    default_salesforce_mapping,
)
from crmsync.common.crm.salesforce._types import compatible_data_types

__all__ = [
    "AUTH_METHODS",
    "DEFAULT_API_VERSION",
    "DEFAULT_SALESFORCE_ROWS",
    "EMAIL_FIELD",
    "PROVIDER",
    "AuthMethod",
    "ConnectorOptions",
    "DeletedFeedWindowExceeded",
    "SalesforceConnector",
    "SalesforceCredentials",
    "compatible_data_types",
    "connector_for",
    "credentials_from_connection",
    "default_salesforce_mapping",
]
