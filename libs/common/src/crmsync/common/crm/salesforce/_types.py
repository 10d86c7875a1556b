"""Salesforce field types, and the crmsync data types each may fill (R4). A pure data table."""

from __future__ import annotations

from crmsync.common.domain.fields import DataType

NUMERIC_TYPES = frozenset({"double", "int", "long", "currency", "percent"})
STRING_LIKE_TYPES = frozenset(
    {"string", "textarea", "picklist", "combobox", "phone", "url", "id", "reference", "encryptedstring"}
)
_FILLS: dict[str, frozenset[DataType]] = {
    # An e-mail address is also a fine value of a text field.
    "email": frozenset({DataType.EMAIL, DataType.TEXT}),
    "boolean": frozenset({DataType.BOOLEAN}),
    "date": frozenset({DataType.DATE}),
    "datetime": frozenset({DataType.DATETIME}),
    "multipicklist": frozenset({DataType.MULTI_TEXT}),
    **{name: frozenset({DataType.NUMBER, DataType.SCORE}) for name in NUMERIC_TYPES},
    **{name: frozenset({DataType.TEXT}) for name in STRING_LIKE_TYPES},
}


def compatible_data_types(crm_type: str) -> frozenset[DataType]:
    """Returns the crmsync data types a Salesforce field of this type may fill (R4)."""
    return _FILLS.get(crm_type.lower(), frozenset())
