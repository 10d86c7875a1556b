"""The product's role vocabulary: which objects a connector is asked for, and which of its
records' fields carry what.

Every connector accepts the object role names (`Lead`, `Contact`, `Account`, `User`,
`Opportunity`) and maps them to its own objects. Records stay plain dicts in the CRM's own
field names; a connector's `RecordRoles` says which of them hold the id, the last-modified
time, the owner, the company, the conversion and the deal fields, so the services read
records through roles and never through one CRM's names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crmsync.common.domain.mapping import CrmObject

# The person kinds, leads first: a lead converted into a contact is settled before the contact (R17).
PERSON_KINDS: tuple[CrmObject, ...] = (CrmObject.LEAD, CrmObject.CONTACT)
COMPANY = "Account"
OWNER = "User"
DEAL = "Opportunity"
OBJECT_ROLES: tuple[str, ...] = (CrmObject.LEAD, CrmObject.CONTACT, COMPANY, OWNER, DEAL)


@dataclass(frozen=True)
class DealRoles:
    """The fields of a deal (an opportunity) the product reads."""

    id: str
    modified_at: str
    name: str
    stage: str
    amount: str
    close_date: str
    company_id: str
    contact_id: str

    @property
    def fields(self) -> tuple[str, ...]:
        """Returns every deal role field, to read."""
        return tuple(
            dict.fromkeys(
                (
                    self.id,
                    self.modified_at,
                    self.name,
                    self.stage,
                    self.amount,
                    self.close_date,
                    self.company_id,
                    self.contact_id,
                )
            )
        )


@dataclass(frozen=True)
class RecordRoles:
    """Which fields of a connector's person records carry what.

    `owner_name`, `owner_email` and `company_name` may be dotted paths into a nested parent
    (`Parent.Field` -> `record["Parent"]["Field"]`), read with `role_value`. `converted` and
    `converted_to` are None when the CRM has no conversion of leads.
    """

    id: str
    modified_at: str  # a UTC-aware datetime in records
    owner_id: str
    owner_name: str
    owner_email: str
    company_id: str  # on contacts
    company_name: str  # on contacts
    converted: str | None  # on leads: whether it was converted (qualified)
    converted_to: str | None  # on leads: the id of the contact it became
    deal: DealRoles

    def person_fields(self, kind: str) -> tuple[str, ...]:
        """Returns the role fields to read on a lead or a contact."""
        fields = [self.id, self.modified_at, self.owner_id, self.owner_name, self.owner_email]
        if kind == CrmObject.CONTACT:
            fields += [self.company_id, self.company_name]
        elif kind == CrmObject.LEAD:
            fields += [name for name in (self.converted, self.converted_to) if name]
        return tuple(dict.fromkeys(fields))


def role_value(record: Mapping[str, Any], path: str) -> Any:
    """Returns the value at a field or a dotted path (`Parent.Field`); None when any step is missing."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value
