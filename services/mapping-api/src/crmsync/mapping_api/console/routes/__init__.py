"""The console's screens, one router each, in the order of the navigation."""

from __future__ import annotations

from crmsync.mapping_api.console.routes import auth, contacts, crm, health, mapping, schedule

ROUTERS = (auth.router, mapping.router, schedule.router, contacts.router, crm.router, health.router)
