"""What a use case can refuse, independent of HTTP (entrypoints/errors.py maps these)."""

from __future__ import annotations

from collections.abc import Sequence

from crmsync.common.domain.mapping_rules import Violation


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    """The thing does not exist in the caller's account (R21: another account's is not found either)."""

    code = "not_found"


class Invalid(DomainError):
    """Input that parses but is not acceptable; names the field (R22)."""

    code = "invalid"


class MappingRefused(DomainError):
    """A mapping (or policy) that breaks rules; carries every violation."""

    code = "mapping_refused"

    def __init__(self, violations: Sequence[Violation]) -> None:
        count = len(violations)
        super().__init__(f"the mapping breaks {count} rule{'s' if count != 1 else ''}")
        self.violations = list(violations)
        first = self.violations[0] if self.violations else None
        self.field = _violation_field(first) if first else "rows"


class NoConnection(DomainError):
    code = "no_crm_connection"

    def __init__(self) -> None:
        super().__init__("no CRM connection is set up; PUT /v1/connection first", field="connection")


class CrmUnavailable(DomainError):
    """The CRM could not be reached or refused us; the caller may try again."""

    code = "crm_unavailable"


class Conflict(DomainError):
    code = "conflict"


def _violation_field(violation: Violation) -> str:
    return f"rows[{violation.row_index}]" if violation.row_index is not None else "rows"


def violation_field(violation: Violation) -> str:
    """Returns the request field a violation is about."""
    return _violation_field(violation)


class Unauthenticated(DomainError):
    code = "unauthenticated"


class Forbidden(DomainError):
    code = "forbidden"
