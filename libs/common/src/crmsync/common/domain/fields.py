"""Contact fields: data types and the standard field catalogue (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DataType(StrEnum):
    """The eight data types a contact field can have (R6)."""

    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    TEXT = "text"
    NUMBER = "number"
    SCORE = "score"
    EMAIL = "email"
    MULTI_TEXT = "multi_text"


@dataclass(frozen=True)
class StandardField:
    key: str
    label: str
    data_type: DataType


EMAIL = "email"
OPTED_OUT = "opted_out"
COMPANY = "company"
SALES_OWNER_NAME = "sales_owner_name"
SALES_OWNER_EMAIL = "sales_owner_email"

STANDARD_FIELDS: tuple[StandardField, ...] = (
    StandardField(EMAIL, "E-mail Address", DataType.EMAIL),
    StandardField("first_name", "First Name", DataType.TEXT),
    StandardField("last_name", "Last Name", DataType.TEXT),
    StandardField(COMPANY, "Company", DataType.TEXT),
    StandardField("job_title", "Job Title", DataType.TEXT),
    StandardField("business_phone", "Business Phone", DataType.TEXT),
    StandardField("mobile_phone", "Mobile Phone", DataType.TEXT),
    StandardField("street", "Business Street", DataType.TEXT),
    StandardField("city", "Business City", DataType.TEXT),
    StandardField("state", "Business State", DataType.TEXT),
    StandardField("postal_code", "Business Postal Code", DataType.TEXT),
    StandardField("country", "Business Country", DataType.TEXT),
    StandardField("time_zone", "Time Zone", DataType.TEXT),
    StandardField("website", "Website", DataType.TEXT),
    StandardField("industry", "Industry", DataType.TEXT),
    StandardField("lead_source", "Lead Source", DataType.TEXT),
    StandardField("status", "Status", DataType.TEXT),
    StandardField("segment", "Segment", DataType.TEXT),
    StandardField("subsegment", "Subsegment", DataType.TEXT),
    StandardField("product", "Product", DataType.MULTI_TEXT),
    StandardField(OPTED_OUT, "Opted Out", DataType.BOOLEAN),
    StandardField("score", "Primary Score", DataType.SCORE),
    StandardField("behavior_score", "Behavior Score", DataType.SCORE),
    StandardField("fit_score", "Fit Score", DataType.SCORE),
    StandardField(SALES_OWNER_NAME, "Sales Owner Name", DataType.TEXT),
    StandardField(SALES_OWNER_EMAIL, "Sales Owner E-mail", DataType.EMAIL),
)

STANDARD_FIELDS_BY_KEY: dict[str, StandardField] = {f.key: f for f in STANDARD_FIELDS}

# Filled from related CRM objects (R5), never mapped by hand.
RELATED_OBJECT_FIELDS = frozenset({SALES_OWNER_NAME, SALES_OWNER_EMAIL})
