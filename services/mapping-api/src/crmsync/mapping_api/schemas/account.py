"""The caller's account and the field catalogue."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from crmsync.common.domain.fields import DataType
from crmsync.mapping_api.schemas.common import example


class AccountOut(BaseModel):
    id: str = Field(examples=["acme"])
    name: str = Field(examples=["Acme Corp"])
    role: Literal["admin", "reader"] = Field(description="The role of the key used for this call.")
    created_at: datetime

    model_config = example(id="acme", name="Acme Corp", role="admin", created_at="2026-11-01T09:00:00Z")


class StandardFieldOut(BaseModel):
    key: str = Field(examples=["first_name"])
    label: str = Field(examples=["First Name"])
    data_type: DataType
    related_object: bool = Field(
        description="Filled from a related CRM object (the record's owner); takes no source (R5)."
    )

    model_config = example(key="first_name", label="First Name", data_type="text", related_object=False)


class CatalogueOut(BaseModel):
    standard_fields: list[StandardFieldOut]
    data_types: list[DataType] = Field(description="The data types a custom field may have (R6).")
