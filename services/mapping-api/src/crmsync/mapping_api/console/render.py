"""Server-rendered pages: one Jinja2 environment, autoescaped, over the console's templates."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from crmsync.mapping_api.console.deps import ConsoleUser
from crmsync.mapping_api.console.session import CSRF_FIELD, CSRF_HEADER

TEMPLATES = Path(__file__).parent / "templates"

NAV = (
    ("mapping", "Contact Mapping", "/console/mapping"),
    ("schedule", "Sync Schedule", "/console/schedule"),
    ("contacts", "All Contacts", "/console/contacts"),
    ("connection", "Connection", "/console/connection"),
    ("entities", "CRM Entities", "/console/entities"),
    ("health", "Sync Health", "/console/health"),
)


def _when(value: datetime | None) -> str:
    """A time as the console shows it: UTC, to the second."""
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value.tzinfo else value.isoformat()


def _setting(value: object) -> str:
    """A row attribute as the preview shows it (Allow Push None is the default policy)."""
    return {None: "default", True: "on", False: "off"}.get(value, str(value))  # type: ignore[call-overload]


environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["when"] = _when
environment.filters["setting"] = _setting
environment.globals.update(nav=NAV, csrf_field=CSRF_FIELD, csrf_header=CSRF_HEADER)


def render(
    request: Request,
    template: str,
    *,
    user: ConsoleUser | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Returns the template rendered for this request and user."""
    html = environment.get_template(template).render(request=request, user=user, **context)
    return HTMLResponse(html, status_code=status_code)
