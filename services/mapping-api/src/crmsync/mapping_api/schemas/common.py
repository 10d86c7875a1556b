"""Shared pieces of the request and response bodies: storable text, examples, the error body."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


def storable(value: str) -> str:
    """Refuses text PostgreSQL or UTF-8 cannot hold (NUL, lone surrogates), so it is a 422, not a 500."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


Text = Annotated[str, AfterValidator(storable)]
FieldName = Annotated[Text, StringConstraints(min_length=1, max_length=80)]
CrmFieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}$")]
FieldValue = Annotated[
    Text | int | float | bool | list[Text] | None,
    Field(examples=["Ada", 42, True, ["Widgets", "Gadgets"]]),
]


def example(**values: Any) -> ConfigDict:
    """Returns a model config whose JSON schema carries one whole example object."""
    return ConfigDict(json_schema_extra={"examples": [values]})


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors -----------------------------------------------------------------


class ErrorDetail(BaseModel):
    field: str | None = Field(description="The offending field, e.g. 'rows[3].lead_source' or 'limit'.")
    message: str
    rule: str | None = Field(None, description="The design rule broken (R1…R23), when one is.")
    row: int | None = Field(None, description="Index of the mapping row, for a refused mapping.")
    destination: str | None = None


class ErrorBody(BaseModel):
    error: str = Field(examples=["mapping_refused"], description="A stable, machine-readable code.")
    message: str = Field(examples=["the mapping breaks 1 rule"])
    field: str | None = Field(
        None, examples=["rows[0].lead_source"], description="The first offending field."
    )
    details: list[ErrorDetail] = Field(default_factory=list)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "mapping_refused",
                    "message": "the mapping breaks 1 rule",
                    "field": "rows[0]",
                    "details": [
                        {
                            "field": "rows[0]",
                            "message": "E-mail Address must map from Lead.Email",
                            "rule": "R2",
                            "row": 0,
                            "destination": "email",
                        }
                    ],
                }
            ]
        }
    )
