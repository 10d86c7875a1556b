"""Salesforce's two error shapes: one for a whole request, one per record of a write."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    """A Salesforce error for the whole request: [{"message", "errorCode", "fields"?}]."""

    def __init__(
        self, status: int, error_code: str, message: str, fields: Iterable[str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = list(fields) if fields is not None else None

    def body(self) -> list[dict[str, Any]]:
        item: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]


@dataclass(frozen=True)
class RecordError:
    """One record's error in a write result."""

    status_code: str
    message: str
    fields: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"statusCode": self.status_code, "message": self.message, "fields": list(self.fields)}


class RecordRejected(Exception):
    def __init__(self, *errors: RecordError) -> None:
        super().__init__(errors[0].message)
        self.errors = errors
