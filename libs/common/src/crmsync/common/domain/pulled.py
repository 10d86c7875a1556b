"""A CRM record as the contact store will hold it (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class MappedRecord:
    """One Lead or Contact record mapped to destination values, with its related-object facts (R5)."""

    external_id: str
    crm_object: str
    modstamp: datetime
    values: dict[str, Any]
    account_external_id: str | None
    account_name: str | None
    owner_external_id: str | None
    owner_name: str | None
    owner_email: str | None
    # The Contact a converted Lead became (R17).
    converted_contact_id: str | None = None
