"""Every error becomes a JSON body that names the field (R22); domain errors map to status codes here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from crmsync.common.domain.mapping_rules import Violation
from crmsync.mapping_api.handlers.errors import (
    Conflict,
    CrmUnavailable,
    DomainError,
    Forbidden,
    Invalid,
    MappingRefused,
    NoConnection,
    NotFound,
    Unauthenticated,
    violation_field,
)
from crmsync.mapping_api.schemas import ErrorBody, ErrorDetail

log = structlog.get_logger(__name__)

STATUS: dict[type[DomainError], int] = {
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    NoConnection: 409,
    Conflict: 409,
    Invalid: 422,
    MappingRefused: 422,
    CrmUnavailable: 502,
}

_DESCRIPTIONS = {
    401: "No API key, or an unknown one.",
    403: "A reader key tried to write.",
    404: "Not found in the caller's account (another account's things are not found either).",
    409: "Conflicts with the current state, e.g. no CRM connection yet.",
    422: "Invalid input or a mapping that breaks rules; every offending field is named.",
    502: "The CRM could not be reached or refused the request.",
}
# Documented on every route so clients and the OpenAPI checks know the error body.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in _DESCRIPTIONS.items()
}


def _body(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def field_location(loc: tuple[Any, ...]) -> str:
    """Returns a validation error's location as the request field, e.g. rows[3].data_type."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or (str(loc[0]) if loc else "body")


def violation_details(violations: Iterable[Violation]) -> list[ErrorDetail]:
    """Returns each broken mapping rule as an error detail naming its row and field (R22)."""
    return [
        ErrorDetail(
            field=violation_field(v),
            message=v.message,
            rule=v.rule,
            row=v.row_index,
            destination=v.destination,
        )
        for v in violations
    ]


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 400)
    details: list[ErrorDetail] = []
    if isinstance(exc, MappingRefused):
        details = violation_details(exc.violations)
    elif exc.field:
        details = [ErrorDetail(field=exc.field, message=exc.message)]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return _body(
        status, ErrorBody(error=exc.code, message=exc.message, field=exc.field, details=details), headers
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [ErrorDetail(field=field_location(tuple(e["loc"])), message=e["msg"]) for e in exc.errors()]
    first = details[0].field if details else None
    message = f"{first}: {details[0].message}" if details else "invalid request"
    return _body(422, ErrorBody(error="invalid", message=message, field=first, details=details))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # A body that is not JSON (or not UTF-8) is invalid input like any other (R22).
        return _body(422, ErrorBody(error="invalid", message=str(exc.detail), field="body"))
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _body(
        exc.status_code, ErrorBody(error=code, message=str(exc.detail)), getattr(exc, "headers", None)
    )


async def _integrity_error(_: Request, exc: Exception) -> JSONResponse:
    # Two writers raced for the same row (e.g. two saves claiming the same version number).
    log.warning("integrity_error", error=str(exc)[:300])
    return _body(409, ErrorBody(error="conflict", message="a concurrent change won; read and try again"))


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected_error", exc_info=exc)
    return _body(500, ErrorBody(error="internal", message="internal error; it has been logged"))


def install(app: FastAPI) -> None:
    """Registers the handlers of every error kind on the app."""
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(Exception, _unexpected)
