"""From CRM records to contact values (pure): mapping, related objects, conversions (R5, R17).

A lead or contact record, read with the fields `fields_to_read` asks for, is
turned into the destination values of the account's mapping plus what related
objects fill by themselves: Company from a contact's company name, the sales
owner from the owner (R5). Which of the record's fields carry the id, the
modified time, the owner, the company and the conversion is the connector's
`RecordRoles`; a deal is read through its `DealRoles`.
"""

from __future__ import annotations

from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from crmsync.common.crm.roles import PERSON_KINDS, DealRoles, RecordRoles, role_value
from crmsync.common.domain.fields import COMPANY, SALES_OWNER_EMAIL, SALES_OWNER_NAME, DataType
from crmsync.common.domain.mapping import CrmObject, Mapping
from crmsync.common.domain.pulled import MappedRecord
from crmsync.puller.domain.deals import PulledDeal

LEAD = CrmObject.LEAD.value
CONTACT = CrmObject.CONTACT.value
ENTITIES = tuple(kind.value for kind in PERSON_KINDS)  # leads first: a converted lead hands over (R17)


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


def fields_to_read(
    *, mapping: Mapping, roles: RecordRoles, entity: str, described_fields: set[str]
) -> list[str]:
    """Returns the CRM fields a sync reads on that entity: identity and related role fields, mapped
    sources, and on leads the conversion fields the CRM's describe has."""
    conversion = {name for name in (roles.converted, roles.converted_to) if name}
    wanted = [name for name in roles.person_fields(entity) if name not in conversion]
    wanted += mapping.source_fields(entity)
    if entity == LEAD:
        wanted += [
            name for name in (roles.converted, roles.converted_to) if name and name in described_fields
        ]
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


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one entity's records are read under a mapping and a connector's roles."""

    # (destination, source path, data type) of the rows with a source on that entity.
    rows: tuple[tuple[str, tuple[str, ...], DataType], ...]
    # A contact's company comes from its CRM company when no contact source is mapped (R5).
    company_from_account: bool
    company_name: tuple[str, ...] | None
    owner_name: tuple[str, ...]
    owner_email: tuple[str, ...]
    converted: str | None
    converted_to: str | None


def _new_plan(mapping: Mapping, roles: RecordRoles, entity: str) -> _Plan:
    company = mapping.row(COMPANY)
    lead = entity == LEAD
    return _Plan(
        rows=tuple(
            (row.destination, tuple(source.split(".")), row.data_type)
            for row in mapping.rows
            if (source := row.source_for(entity))
        ),
        company_from_account=company is None or not company.contact_source,
        company_name=tuple(roles.company_name.split(".")) if entity == CONTACT else None,
        owner_name=tuple(roles.owner_name.split(".")),
        owner_email=tuple(roles.owner_email.split(".")),
        converted=roles.converted if lead else None,
        converted_to=roles.converted_to if lead else None,
    )


# Per mapping and roles object: hashing a whole Mapping on every record would cost more than the mapping.
_PLANS: dict[tuple[int, int, str], tuple[Mapping, RecordRoles, _Plan]] = {}


def _plan(mapping: Mapping, roles: RecordRoles, entity: str) -> _Plan:
    key = (id(mapping), id(roles), entity)
    cached = _PLANS.get(key)
    if cached is None or cached[0] is not mapping or cached[1] is not roles:
        if len(_PLANS) > 256:
            _PLANS.clear()
        cached = (mapping, roles, _new_plan(mapping, roles, entity))
        _PLANS[key] = cached
    return cached[2]


_PLAIN = (str, bool, int, float)


def _converted_to(record: AnyMapping[str, Any], plan: _Plan) -> str | None:
    """Returns the contact a converted lead became (R17): its id when the lead says it was converted,
    or, in a CRM without such a flag, whenever it names one."""
    if plan.converted_to is None or (plan.converted is not None and not record.get(plan.converted)):
        return None
    return record.get(plan.converted_to)


def map_record(
    *, mapping: Mapping, roles: RecordRoles, entity: str, record: AnyMapping[str, Any]
) -> MappedRecord:
    """Returns the record's destination values and related-object facts."""
    values: dict[str, Any] = {}
    plan = _plan(mapping, roles, entity)
    for destination, path, data_type in plan.rows:
        value = record.get(path[0]) if len(path) == 1 else _nested(record, path)
        if value is None or (type(value) in _PLAIN and data_type not in _CONVERTED):
            values[destination] = value
        else:
            values[destination] = json_value(value, data_type)
    company_name = _nested(record, plan.company_name) if plan.company_name else None
    if plan.company_name and plan.company_from_account:
        values[COMPANY] = company_name
    owner_name = _nested(record, plan.owner_name)
    owner_email = _nested(record, plan.owner_email)
    values[SALES_OWNER_NAME] = owner_name
    values[SALES_OWNER_EMAIL] = owner_email
    return MappedRecord(
        external_id=record[roles.id],
        crm_object=entity,
        modstamp=_time(record[roles.modified_at]),
        values=values,
        account_external_id=record.get(roles.company_id) if entity == CONTACT else None,
        account_name=company_name,
        owner_external_id=record.get(roles.owner_id),
        owner_name=owner_name,
        owner_email=owner_email,
        converted_contact_id=_converted_to(record, plan),
    )


def map_deal(roles: DealRoles, record: AnyMapping[str, Any]) -> PulledDeal:
    """Returns the deal a CRM record describes, linked to its company and contact (R5)."""
    amount = record.get(roles.amount)
    close_date = record.get(roles.close_date)
    if isinstance(close_date, datetime):
        close_date = close_date.date()
    elif isinstance(close_date, str):
        close_date = date.fromisoformat(close_date[:10])
    return PulledDeal(
        external_id=record[roles.id],
        modified_at=_time(record[roles.modified_at]),
        name=_text(role_value(record, roles.name)),
        stage=_text(role_value(record, roles.stage)),
        amount=None if amount is None else Decimal(str(amount)),
        close_date=close_date,
        company_external_id=record.get(roles.company_id),
        contact_external_id=record.get(roles.contact_id),
    )


def _text(value: Any) -> str | None:
    """Returns a value the store keeps as text (a CRM may answer a stage with its option's number)."""
    return value if value is None or isinstance(value, str) else str(value)


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
