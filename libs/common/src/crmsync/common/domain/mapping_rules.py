"""The checks a mapping must pass before it is saved (pure; R1–R6, R8).

`check_mapping` takes the rows to save, each CRM object's describe (field name ->
a field with `fills`, `type` and `updateable`), the push policy and the CRM's
e-mail fields, and returns every violation, each naming its row and rule. An
empty list means the mapping may be saved. A describe of None means that object
could not be described (no CRM connection yet): the checks that need it (R4)
are left for the next save.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from crmsync.common.domain.fields import (
    EMAIL,
    RELATED_OBJECT_FIELDS,
    STANDARD_FIELDS_BY_KEY,
    DataType,
)
from crmsync.common.domain.mapping import (
    CrmObject,
    FieldKind,
    MappingRow,
    PushPolicy,
    effective_allow_push,
)

CUSTOM_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")

# Kept only while callers move to `CrmField.fills`: the Salesforce connector owns this table.
_NUMERIC = frozenset({"double", "int", "long", "currency", "percent"})
_STRING_LIKE = frozenset(
    {"string", "textarea", "picklist", "combobox", "phone", "url", "id", "reference", "encryptedstring"}
)


class DescribedField(Protocol):
    """What the checks need of one CRM field (crm.interface.CrmField has it)."""

    @property
    def type(self) -> str: ...

    @property
    def fills(self) -> frozenset[DataType]: ...

    @property
    def updateable(self) -> bool: ...


Describe = Mapping[str, DescribedField]


@dataclass(frozen=True)
class Violation:
    """One broken rule: which row (None for the mapping as a whole), which rule, why."""

    row_index: int | None
    destination: str | None
    rule: str
    message: str


def compatible_data_types(crm_type: str) -> frozenset[DataType]:
    """Returns the destination data types a Salesforce field of this type may fill (R4).

    Superseded by `CrmField.fills`, which each connector sets from its own type table.
    """
    crm_type = crm_type.lower()
    if crm_type == "email":
        # An e-mail address is also a fine value of a text field.
        return frozenset({DataType.EMAIL, DataType.TEXT})
    if crm_type == "boolean":
        return frozenset({DataType.BOOLEAN})
    if crm_type == "date":
        return frozenset({DataType.DATE})
    if crm_type == "datetime":
        return frozenset({DataType.DATETIME})
    if crm_type in _NUMERIC:
        return frozenset({DataType.NUMBER, DataType.SCORE})
    if crm_type == "multipicklist":
        return frozenset({DataType.MULTI_TEXT})
    if crm_type in _STRING_LIKE:
        return frozenset({DataType.TEXT})
    return frozenset()


def check_mapping(
    rows: Sequence[MappingRow],
    *,
    lead_describe: Describe | None,
    contact_describe: Describe | None,
    policy: PushPolicy,
    email_fields: Mapping[str, str],
) -> list[Violation]:
    """Returns every violation of R1–R6 and R8 in `rows`, in row order; empty when it may be saved.

    `email_fields`: the CRM's e-mail field of each person kind (Lead, Contact), which R2
    pins E-mail Address to (the provider's `email_field`).
    """
    violations: list[Violation] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        violations.extend(_check_row(index, row, seen))
        seen.setdefault(row.destination, index)
        for crm_object, describe in ((CrmObject.LEAD, lead_describe), (CrmObject.CONTACT, contact_describe)):
            violations.extend(_check_source(index, row, crm_object, describe, policy))
    violations.extend(_check_email(rows, email_fields))
    if not any(row.is_score and not row.local_only for row in rows):
        violations.append(
            Violation(None, None, "R3", "at least one field of type Score must be mapped to the CRM")
        )
    return violations


def _check_row(index: int, row: MappingRow, seen: Mapping[str, int]) -> list[Violation]:
    def broken(rule: str, message: str) -> Violation:
        return Violation(index, row.destination, rule, message)

    found: list[Violation] = []
    if row.destination in seen:
        found.append(
            broken("R1", f"destination {row.destination!r} is already mapped in row {seen[row.destination]}")
        )
    if row.kind == FieldKind.STANDARD:
        standard = STANDARD_FIELDS_BY_KEY.get(row.destination)
        if standard is None:
            found.append(
                broken("R1", f"{row.destination!r} is not a standard field; add it as a custom field")
            )
        elif standard.data_type != row.data_type:
            found.append(
                broken("R1", f"standard field {row.destination!r} has data type {standard.data_type.value}")
            )
        if row.destination in RELATED_OBJECT_FIELDS and not row.local_only:
            found.append(
                broken("R5", f"{row.destination!r} is filled from the record's owner; it takes no source")
            )
    else:
        if not CUSTOM_FIELD_NAME.match(row.destination):
            found.append(
                broken("R6", "a custom field name starts with a letter and has only letters, digits and _")
            )
        elif row.destination in STANDARD_FIELDS_BY_KEY:
            found.append(broken("R6", f"{row.destination!r} is a standard field; map it as one"))
    if row.is_score and row.allow_push is False:
        found.append(
            broken("R8", "score fields always push; to stop a score pushing, remove its mapping instead")
        )
    return found


def _check_source(
    index: int, row: MappingRow, crm_object: CrmObject, describe: Describe | None, policy: PushPolicy
) -> list[Violation]:
    source = row.source_for(crm_object)
    if source is None or describe is None:
        return []
    where = f"{crm_object.value}.{source}"
    field = describe.get(source)
    if field is None:
        return [Violation(index, row.destination, "R4", f"{where} does not exist in the CRM")]
    found: list[Violation] = []
    # A field that names nothing it fills is read by its type (describes made before `fills`).
    allowed = field.fills or compatible_data_types(field.type)
    if row.data_type not in allowed:
        expected = ", ".join(sorted(t.value for t in allowed)) or "nothing"
        found.append(
            Violation(
                index,
                row.destination,
                "R4",
                f"{where} is of CRM type {field.type}, which fills {expected}, not {row.data_type.value}",
            )
        )
    if effective_allow_push(row, policy) and not field.updateable:
        found.append(
            Violation(
                index,
                row.destination,
                "R4",
                f"{where} is not updateable in the CRM; turn Allow Push off for this field",
            )
        )
    return found


def _check_email(rows: Sequence[MappingRow], email_fields: Mapping[str, str]) -> list[Violation]:
    email_rows = [(i, r) for i, r in enumerate(rows) if r.destination == EMAIL]
    if not email_rows:
        return [Violation(None, EMAIL, "R2", "E-mail Address must be mapped from the CRM's e-mail field")]
    index, row = email_rows[0]
    found = []
    for crm_object in (CrmObject.LEAD, CrmObject.CONTACT):
        email_field = email_fields.get(crm_object)
        if email_field is None or row.source_for(crm_object) != email_field:
            found.append(
                Violation(
                    index,
                    EMAIL,
                    "R2",
                    f"E-mail Address must map from {crm_object.value}.{email_field}",
                )
            )
    return found
