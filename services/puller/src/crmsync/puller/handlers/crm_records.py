"""From CRM records to contact values (pure): mapping, related objects, conversions (R5, R17).

A Lead or Contact record, read with the fields `fields_to_read` asks for, is
turned into the destination values of the account's mapping plus what related
objects fill by themselves: Company from a Contact's Account name, the sales
owner from the Owner (R5).
"""

from __future__ import annotations

from collections.abc import Mapping as AnyMapping
from datetime import date, datetime
from typing import Any

from crmsync.common.domain.fields import COMPANY, SALES_OWNER_EMAIL, SALES_OWNER_NAME, DataType
from crmsync.common.domain.mapping import CrmObject, Mapping
from crmsync.common.domain.pulled import MappedRecord

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


# Types whose values may need more than passing through (see json_value).
_CONVERTED = frozenset({DataType.MULTI_TEXT, DataType.NUMBER, DataType.SCORE})


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


def _nested(record: AnyMapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


# Per mapping object: hashing a whole Mapping on every record would cost more than the mapping itself.
_PLANS: dict[tuple[int, str], tuple[Mapping, tuple[tuple[str, tuple[str, ...], DataType], ...], bool]] = {}


def _plan(mapping: Mapping, entity: str) -> tuple[tuple[tuple[str, tuple[str, ...], DataType], ...], bool]:
    """Returns (destination, source path, data type) of the rows with a source on that entity,
    and whether a Contact's company comes from its Account (no Contact source mapped, R5)."""
    key = (id(mapping), entity)
    cached = _PLANS.get(key)
    if cached is None or cached[0] is not mapping:
        if len(_PLANS) > 256:
            _PLANS.clear()
        rows = tuple(
            (row.destination, tuple(source.split(".")), row.data_type)
            for row in mapping.rows
            if (source := row.source_for(entity))
        )
        company = mapping.row(COMPANY)
        cached = (mapping, rows, company is None or not company.contact_source)
        _PLANS[key] = cached
    return cached[1], cached[2]


_PLAIN = (str, bool, int, float)


def map_record(*, mapping: Mapping, entity: str, record: AnyMapping[str, Any]) -> MappedRecord:
    """Returns the record's destination values and related-object facts."""
    values: dict[str, Any] = {}
    plan, company_from_account = _plan(mapping, entity)
    for destination, path, data_type in plan:
        value = record.get(path[0]) if len(path) == 1 else _nested(record, path)
        if value is None or (type(value) in _PLAIN and data_type not in _CONVERTED):
            values[destination] = value
        else:
            values[destination] = json_value(value, data_type)
    account_name = _nested(record, ("Account", "Name")) if entity == CONTACT else None
    if entity == CONTACT and company_from_account:
        values[COMPANY] = account_name
    owner_name = _nested(record, ("Owner", "Name"))
    owner_email = _nested(record, ("Owner", "Email"))
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
