"""What the puller and pusher need from a CRM, independent of which CRM it is.

Records are plain dicts in the CRM's own field names, relationship fields as
nested dicts; which field carries what is the connector's `roles`
(crmsync.common.crm.roles). Streams yield batches so memory stays flat
however large the CRM is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from crmsync.common.crm.roles import RecordRoles
from crmsync.common.domain.fields import DataType

CrmRecord = dict[str, Any]


class CrmError(Exception):
    """Anything that went wrong talking to the CRM."""

    def __init__(self, message: str, *, error_code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.status = status


class CrmTransientError(CrmError):
    """Worth retrying later: 429, 5xx, timeouts, connection errors, UNABLE_TO_LOCK_ROW.

    `retry_after`: the wait the CRM asked for, in seconds. `maybe_applied`: the CRM
    may have acted on the request (a timeout, a 500), so a create must not simply be
    repeated. `retried`: the error already had its round of retries (crmsync.common.retry).
    """

    retry_after: float | None = None
    maybe_applied: bool = False
    retried: bool = False


class CrmRejected(CrmError):
    """The CRM refused the request itself; retrying the same request will not help."""

    def __init__(
        self,
        message: str,
        *,
        error_code: str | None = None,
        status: int | None = None,
        fields: Sequence[str] = (),
    ) -> None:
        super().__init__(message, error_code=error_code, status=status)
        self.fields = tuple(fields)


class ChangeCursorExpired(CrmRejected):
    """The CRM no longer follows this change cursor: read again with None (a full read).

    Deletions in the meantime are then whatever the full read no longer returns (R16).
    """


class CrmAuthError(CrmRejected):
    """Credentials refused (bad client, revoked token): the connection needs attention."""


class CrmBudgetExhausted(CrmError):
    """The daily API budget is down to the reserve kept for the customer's other tools."""

    def __init__(self, message: str, *, used: int, limit: int) -> None:
        super().__init__(message, error_code="REQUEST_LIMIT_EXCEEDED")
        self.used = used
        self.limit = limit


@dataclass(frozen=True)
class CrmField:
    """One field of an object's describe.

    `type` is the CRM's own type text, for display; `fills` is what the checks read: the
    crmsync data types the field may fill (R4), set by the connector from its own type table.
    """

    name: str
    label: str
    type: str
    updateable: bool = True
    createable: bool = True
    nillable: bool = True
    length: int = 0
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    fills: frozenset[DataType] = frozenset()


@dataclass(frozen=True)
class ObjectDescribe:
    name: str
    label: str
    fields: dict[str, CrmField]
    queryable: bool = True
    createable: bool = True
    updateable: bool = True


@dataclass(frozen=True)
class DeletedRecord:
    id: str
    deleted_at: datetime


@dataclass(frozen=True)
class ChangeBatch:
    """One batch of a change read.

    `records`: changed records (on a full read, all of them); `deleted_ids`: ids deleted in
    the CRM (R16), empty on a full read; `cursor`: when not None, a safe resume point (all
    before it was yielded). The last batch of a read always carries one.
    """

    records: list[CrmRecord]
    deleted_ids: list[str] = field(default_factory=list)
    cursor: str | None = None


@dataclass(frozen=True)
class WriteError:
    status_code: str
    message: str
    fields: tuple[str, ...] = ()

    @property
    def transient(self) -> bool:
        return self.status_code in TRANSIENT_ERROR_CODES


@dataclass(frozen=True)
class WriteResult:
    """The CRM's answer for one record of a batch write, in the order sent."""

    id: str | None
    success: bool
    errors: tuple[WriteError, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ApiBudget:
    used: int
    limit: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


# The write status codes that mean "try again later" rather than "this record is wrong".
TRANSIENT_ERROR_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG"})


class CrmConnector(Protocol):
    """A connection to one account's CRM. Implementations retry transient errors themselves.

    Objects are named by role (crmsync.common.crm.roles: PERSON_KINDS, COMPANY, OWNER, DEAL).
    """

    @property
    def roles(self) -> RecordRoles:
        """Returns which fields of this CRM's records carry the id, modified time, owner, …"""
        ...

    async def describe(self, object_name: str) -> ObjectDescribe:
        """Returns the object's fields."""
        ...

    async def count(self, object_name: str) -> int:
        """Returns how many (not deleted) records the object has."""
        ...

    def changed_since(
        self, object_name: str, fields: Sequence[str], since: datetime, *, page_size: int = 2000
    ) -> AsyncIterator[list[CrmRecord]]:
        """Yields records with `roles.modified_at` >= since, ordered by (modified_at, id)."""
        ...

    def changes(
        self, object_name: str, fields: Sequence[str], cursor: str | None, *, page_size: int = 2000
    ) -> AsyncIterator[ChangeBatch]:
        """Yields what changed since the opaque `cursor`, deletions included.

        cursor None: every record (a full read); the last batch's cursor follows changes
        from the moment the read began. The last batch always carries a cursor (it may
        have no records). Raises ChangeCursorExpired when the CRM no longer follows it.
        """
        ...

    def export_all(self, object_name: str, fields: Sequence[str]) -> AsyncIterator[list[CrmRecord]]:
        """Yields every record of the object (Bulk API above a size, REST query below)."""
        ...

    async def get_by_ids(
        self, object_name: str, ids: Sequence[str], fields: Sequence[str]
    ) -> list[CrmRecord]:
        """Returns the records with these ids (missing ones are left out)."""
        ...

    async def sample_values(self, object_name: str, field_name: str, *, limit: int = 10) -> list[Any]:
        """Returns up to `limit` distinct non-empty values of a field."""
        ...

    async def create(self, object_name: str, records: Sequence[CrmRecord]) -> list[WriteResult]:
        """Creates up to 200 records (allOrNone false); one result per record, in order."""
        ...

    async def update(self, object_name: str, records: Sequence[CrmRecord]) -> list[WriteResult]:
        """Updates up to 200 records, each with its `roles.id`; one result per record, in order."""
        ...

    async def budget(self) -> ApiBudget:
        """Returns the daily API budget as last reported by the CRM."""
        ...

    async def aclose(self) -> None: ...
