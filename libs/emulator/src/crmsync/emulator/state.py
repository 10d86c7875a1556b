"""The emulator's state: its orgs, their OAuth clients, and the access tokens it issued.

One emulator serves many orgs at the same instance URL: the access token says
which org a call belongs to. Everything runs on one event loop, so the state
needs no locks.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from crmsync.emulator import ids
from crmsync.emulator.clock import now_ms
from crmsync.emulator.faults import FaultPlan
from crmsync.emulator.store import Org


@dataclass
class OrgState:
    org: Org
    faults: FaultPlan
    token_ttl: int
    expired: set[str] = field(default_factory=set)


@dataclass
class Token:
    org_id: str
    expires_at: float


class Emulator:
    """The orgs (with their OAuth clients) and the access tokens issued for them."""

    def __init__(self, *, token_ttl: int = 7200, api_limit: int = 100_000) -> None:
        self.token_ttl = token_ttl
        # Generated modstamps count back from this instant, so one seed gives the same org all day long.
        self.started_ms = now_ms()
        self.api_limit = api_limit
        self.orgs: dict[str, OrgState] = {}
        self.by_client: dict[str, str] = {}
        self.tokens: dict[str, Token] = {}
        self._next_org = 1

    def create_org(
        self,
        *,
        leads: int,
        contacts: int,
        seed: int,
        client_id: str | None = None,
        client_secret: str | None = None,
        api_limit: int | None = None,
        token_ttl: int | None = None,
    ) -> Org:
        """Returns a new org with generated records and its own OAuth client."""
        number = self._next_org
        self._next_org += 1
        client_id = client_id or f"3MVG9{secrets.token_urlsafe(30)}"
        if client_id in self.by_client:
            raise ValueError(f"client_id {client_id!r} already belongs to another org")
        org = Org(
            org_id=ids.make_id("00D", ids.org_tag(number), number),
            number=number,
            leads=leads,
            contacts=contacts,
            seed=seed,
            client_id=client_id,
            client_secret=client_secret or secrets.token_hex(32),
            api_limit=api_limit if api_limit is not None else self.api_limit,
            now=self.started_ms,
        )
        self.orgs[org.org_id] = OrgState(
            org, FaultPlan(seed), token_ttl if token_ttl is not None else self.token_ttl
        )
        self.by_client[client_id] = org.org_id
        return org

    def delete_org(self, org_id: str) -> None:
        """Forgets an org, its OAuth client and every token issued for it."""
        state = self.orgs.pop(org_id)
        self.by_client.pop(state.org.client_id, None)
        for token in [t for t, entry in self.tokens.items() if entry.org_id == org_id]:
            del self.tokens[token]
