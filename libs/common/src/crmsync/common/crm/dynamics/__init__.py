"""Microsoft Dynamics 365 over the Dataverse Web API (OData v4): a CrmConnector.

Signs in with OAuth 2.0 client credentials, describes tables from
`EntityDefinitions`, reads in pages and through change tracking (delta links,
`$deletedEntity`), writes through `$batch`, and keeps to service protection
(429 with Retry-After; the window's remaining requests above a reserve).
"""

from crmsync.common.crm.dynamics._config import DynamicsCredentials, DynamicsOptions
from crmsync.common.crm.dynamics._connection import (
    AUTH_METHODS,
    DEFAULT_API_VERSION,
    PROVIDER,
    connector_for,
    credentials_from_connection,
)
from crmsync.common.crm.dynamics._connector import DynamicsConnector
from crmsync.common.crm.dynamics._entities import ENTITIES, Entity, entity_named
from crmsync.common.crm.dynamics._errors import ChangeTokenExpired
from crmsync.common.crm.dynamics._mapping import DEFAULT_DYNAMICS_ROWS, default_dynamics_mapping
from crmsync.common.crm.dynamics._metadata import field_type
from crmsync.common.crm.dynamics._roles import DYNAMICS_ROLES

__all__ = [
    "AUTH_METHODS",
    "DEFAULT_API_VERSION",
    "DEFAULT_DYNAMICS_ROWS",
    "DYNAMICS_ROLES",
    "ENTITIES",
    "PROVIDER",
    "ChangeTokenExpired",
    "DynamicsConnector",
    "DynamicsCredentials",
    "DynamicsOptions",
    "Entity",
    "connector_for",
    "credentials_from_connection",
    "default_dynamics_mapping",
    "entity_named",
    "field_type",
]
