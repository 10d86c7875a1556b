"""From CRM records to contact values (pure): mapping, related objects, conversions (R5, R17).

A Lead or Contact record, read with the fields `fields_to_read` asks for, is
turned into the destination values of the account's mapping plus what related
objects fill by themselves: Company from a Contact's Account name, the sales
owner from the Owner (R5).
"""

from __future__ import annotations

from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from crmsync.common.domain.fields import COMPANY, SALES_OWNER_EMAIL, SALES_OWNER_NAME, DataType
from crmsync.common.domain.mapping import CrmObject, Mapping

LEAD = CrmObject.LEAD.value
CONTACT = CrmObject.CONTACT.value
OPPORTUNITY = "Opportunity"
ENTITIES = (LEAD, CONTACT)  # Leads first: a converted Lead hands its contact over to the Contact (R17)

# Read on every record whatever the mapping says: identity, time, related objects, conversion.
BASE_FIELDS = {
    LEAD: ("Id", "SystemModstamp", "OwnerId", "Owner.Name", "Owner.Email"),
    CONTACT: ("Id", "SystemModstamp", "OwnerId", "Owner.Name", "Owner.Email", "AccountId", "Account.Name"),
}
CONVERSION_FIELDS = ("IsConverted", "ConvertedContactId")
OPPORTUNITY_FIELDS = (
    "Id",
    "SystemModstamp",
    "Name",
    "StageName",
    "Amount",
    "CloseDate",
    "AccountId",
    "ContactId",
)


class MappingMismatch(Exception):
    """A mapped source field is missing from the CRM's describe (renamed or deleted there)."""


@dataclass(frozen=True)
class MappedRecord:
    """One CRM record as the contact store will hold it."""

    external_id: str
    crm_object: str
    modstamp: datetime
    values: dict[str, Any]
    account_external_id: str | None
    account_name: str | None
    owner_external_id: str | None
    owner_name: str | None
    owner_email: str | None
    converted_contact_id: str | None = None


def check_mapping(*, mapping: Mapping, entity: str, described_fields: set[str]) -> None:
    """Raises MappingMismatch naming the field and the mapping row when a source is gone from the CRM."""
    known = {name.lower() for name in described_fields}
    for row in mapping.rows:
        source = row.source_for(entity)
        if source and source.split(".")[0].lower() not in known:
            raise MappingMismatch(
                f"{entity} field {source!r} no longer exists in the CRM (renamed or deleted); "
                f"it is the {entity} source of the mapping row {row.destination!r}: "
                f"update or remove that row, then sync again"
            )


def fields_to_read(*, mapping: Mapping, entity: str, described_fields: set[str]) -> list[str]:
    """Returns the CRM fields a sync reads on that entity: mapped sources plus identity and related ones."""
    wanted = [*BASE_FIELDS[entity], *mapping.source_fields(entity)]
    if entity == LEAD:
        wanted += [f for f in CONVERSION_FIELDS if f in described_fields]
    return list(dict.fromkeys(wanted))


def json_value(value: Any, data_type: DataType) -> Any:
    """Returns the value as the contact store keeps it in JSON (dates as ISO text, multi-text as a list)."""
    if value is None:
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if data_type == DataType.MULTI_TEXT and isinstance(value, str):
        return [part for part in value.split(";") if part]
    if data_type in (DataType.NUMBER, DataType.SCORE) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _nested(record: AnyMapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def map_record(*, mapping: Mapping, entity: str, record: AnyMapping[str, Any]) -> MappedRecord:
    """Returns the record's destination values and related-object facts."""
    values: dict[str, Any] = {}
    for row in mapping.rows:
        source = row.source_for(entity)
        if source:
            values[row.destination] = json_value(_nested(record, source), row.data_type)
    account_name = _nested(record, "Account.Name") if entity == CONTACT else None
    company_row = mapping.row(COMPANY)
    if entity == CONTACT and (company_row is None or not company_row.contact_source):
        values[COMPANY] = account_name
    owner_name = _nested(record, "Owner.Name")
    owner_email = _nested(record, "Owner.Email")
    values[SALES_OWNER_NAME] = owner_name
    values[SALES_OWNER_EMAIL] = owner_email
    converted = record.get("ConvertedContactId") if record.get("IsConverted") else None
    modstamp = record["SystemModstamp"]
    if not isinstance(modstamp, datetime):
        modstamp = datetime.fromisoformat(str(modstamp))
    return MappedRecord(
        external_id=record["Id"],
        crm_object=entity,
        modstamp=modstamp,
        values=values,
        account_external_id=record.get("AccountId") if entity == CONTACT else None,
        account_name=account_name,
        owner_external_id=record.get("OwnerId"),
        owner_name=owner_name,
        owner_email=owner_email,
        converted_contact_id=converted,
    )
