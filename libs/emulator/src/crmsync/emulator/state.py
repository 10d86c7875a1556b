"""The emulator's state: its orgs, their OAuth clients, and the access tokens it issued.

One emulator serves many orgs at the same instance URL: the access token says
which org a call belongs to. Everything runs on one event loop, so the state
needs no locks.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field

from crmsync.emulator import ids
from crmsync.emulator.clock import now_ms
from crmsync.emulator.faults import FaultPlan
from crmsync.emulator.store import Org


class DuplicateClientId(ValueError):
    """An OAuth client id another org has already."""


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
            raise DuplicateClientId(f"client_id {client_id!r} already belongs to another org")
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

    def create_orgs(
        self,
        *,
        count: int,
        min_records: int,
        max_records: int,
        seed: int,
        client_id_prefix: str | None = None,
        client_secret: str | None = None,
        api_limit: int | None = None,
    ) -> list[Org]:
        """Returns `count` new orgs, each of a size drawn from [min_records, max_records] (half Leads,
        half Contacts) by `seed`; org i (from 1) has data seed `seed + i` and, given a prefix, the
        client id `{prefix}-{i}`. Nothing is generated until it is read, so thousands are ready at once."""
        if count < 0 or not 0 <= min_records <= max_records:
            raise ValueError("count >= 0 and 0 <= min_records <= max_records are needed")
        taken = sorted({f"{client_id_prefix}-{i}" for i in range(1, count + 1)} & set(self.by_client))
        if client_id_prefix and taken:
            raise DuplicateClientId(f"client_id {taken[0]!r} already belongs to another org")
        sizes = random.Random(seed)
        orgs = []
        for i in range(1, count + 1):
            records = sizes.randint(min_records, max_records)
            orgs.append(
                self.create_org(
                    leads=records // 2,
                    contacts=records - records // 2,
                    seed=seed + i,
                    client_id=f"{client_id_prefix}-{i}" if client_id_prefix else None,
                    client_secret=client_secret,
                    api_limit=api_limit,
                )
            )
        return orgs

    def delete_org(self, org_id: str) -> None:
        """Forgets an org, its OAuth client and every token issued for it."""
        state = self.orgs.pop(org_id)
        self.by_client.pop(state.org.client_id, None)
        for token in [t for t, entry in self.tokens.items() if entry.org_id == org_id]:
            del self.tokens[token]
