"""Salesforce over its REST and Bulk API 2.0: the production CrmConnector.

Values come back typed from each object's describe, the same for REST and Bulk:
bool, int, float, `datetime.date`, UTC-aware `datetime`, str; empty is None.
"""

from crmsync.common.crm.salesforce._config import AuthMethod, ConnectorOptions, SalesforceCredentials
from crmsync.common.crm.salesforce._connector import SalesforceConnector
from crmsync.common.crm.salesforce._errors import DeletedFeedWindowExceeded

__all__ = [
    "AuthMethod",
    "ConnectorOptions",
    "DeletedFeedWindowExceeded",
    "SalesforceConnector",
    "SalesforceCredentials",
]
