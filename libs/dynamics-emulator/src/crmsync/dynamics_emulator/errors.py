"""Dataverse's error answers: `{"error": {"code": "0x...", "message": "..."}}` with the HTTP status."""

from __future__ import annotations

# The codes Dataverse answers with for the failures the emulator reproduces.
NOT_FOUND = "0x80040217"
ODATA_INVALID = "0x80060888"
DUPLICATE = "0x80040237"
VERSION_MISMATCH = "0x80060882"
VALIDATION = "0x80044331"
EXPIRED_VERSION_STAMP = "0x80044352"
RATE_LIMIT = "0x80072322"
UNAVAILABLE = "0x80040216"
GENERIC_SQL = "0x80044150"  # -2147204784: a deadlock (SQL 1205) among them
BATCH_TOO_LARGE = "0x8005f103"


class DataverseError(Exception):
    """A request Dataverse refuses: raised anywhere below the routes, answered as its error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message}}


def not_found(logical: str, record_id: str) -> DataverseError:
    return DataverseError(404, NOT_FOUND, f"Entity '{logical}' With Id = {record_id} Does Not Exist")


def invalid(message: str, status: int = 400) -> DataverseError:
    return DataverseError(status, ODATA_INVALID, message)


def no_property(name: str, logical: str) -> DataverseError:
    return invalid(f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{logical}'.")
