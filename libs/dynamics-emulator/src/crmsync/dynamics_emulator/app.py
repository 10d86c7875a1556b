"""The emulator as an ASGI app: the identity platform's token endpoint, the Web API, the control API."""

from __future__ import annotations

from starlette.applications import Starlette

from crmsync.dynamics_emulator.api import auth, control, service
from crmsync.dynamics_emulator.state import Emulator, Settings

__all__ = ["Emulator", "Settings", "create_app"]


def create_app(emulator: Emulator) -> Starlette:
    # The control API first: its paths would otherwise match the identity routes' {tenant}.
    app = Starlette(routes=[*control.routes, *service.routes, *auth.routes])
    app.router.redirect_slashes = False
    app.state.emulator = emulator
    return app
