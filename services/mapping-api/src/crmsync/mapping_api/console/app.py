"""The admin console: server-rendered pages under /console, in the API's own process, calling the
same use cases as the JSON API (never HTTP to itself)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from crmsync.mapping_api.console.deps import CsrfRefused, SignInRequired
from crmsync.mapping_api.console.render import render
from crmsync.mapping_api.console.routes import ROUTERS
from crmsync.mapping_api.console.session import SessionCodec
from crmsync.mapping_api.handlers.errors import DomainError, Forbidden, NotFound

if TYPE_CHECKING:
    from crmsync.mapping_api.bootstrap import Services

PREFIX = "/console"
STATIC = Path(__file__).parent / "static"
# Where `make setup` installs the npm packages the console serves (git-ignored).
ASSETS_ENV = "CRMSYNC_CONSOLE_ASSETS"
ASSETS_RELATIVE = Path(".local/npm/node_modules")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def assets_dir() -> Path | None:
    """Returns the installed npm packages: $CRMSYNC_CONSOLE_ASSETS, else the checkout's .local/npm."""
    if os.environ.get(ASSETS_ENV):
        return Path(os.environ[ASSETS_ENV])
    for base in (Path.cwd(), *Path(__file__).resolve().parents):
        if (base / ASSETS_RELATIVE).is_dir():
            return base / ASSETS_RELATIVE
    return None


def _error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", status_code=status, title=title, message=message)


async def _sign_in(request: Request, _: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/sign-in?next={quote(target)}", status_code=303)


async def _csrf(request: Request, _: Exception) -> Response:
    return _error_page(
        request,
        403,
        "Refused",
        "This form was not sent from your console session. Reload the page and try again.",
    )


async def _domain(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    if isinstance(exc, NotFound):
        return _error_page(request, 404, "Not found", exc.message)
    if isinstance(exc, Forbidden):
        return _error_page(
            request, 403, "Read-only", "Your key is a reader key: it sees everything and changes nothing."
        )
    return _error_page(request, 409, "Not possible now", exc.message)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    title = {404: "Not found", 405: "Not allowed"}.get(exc.status_code, "Error")
    return _error_page(request, exc.status_code, title, str(exc.detail))


def create_console(services: Services) -> FastAPI:
    """Returns the console app, to be mounted at /console of the API."""
    console = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    console.state.services = services
    console.state.codec = SessionCodec(services.settings.secret_key.get_secret_value())
    console.add_exception_handler(SignInRequired, _sign_in)
    console.add_exception_handler(CsrfRefused, _csrf)
    console.add_exception_handler(DomainError, _domain)
    console.add_exception_handler(StarletteHTTPException, _http)

    @console.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        cacheable = "/static/" in request.url.path or "/assets/" in request.url.path
        for name, value in SECURITY_HEADERS.items():
            if not (cacheable and name == "Cache-Control"):
                response.headers.setdefault(name, value)
        return response

    console.mount("/static", StaticFiles(directory=STATIC), name="static")
    assets = assets_dir()
    if assets is not None:
        console.mount("/assets", StaticFiles(directory=assets, check_dir=False), name="assets")
    for router in ROUTERS:
        console.include_router(router)
    return console


def mount_console(app: FastAPI, services: Services) -> None:
    """Serves the console under /console of the API app."""
    app.mount(PREFIX, create_console(services))
