"""An emulated org in the test's own process (no server): `in_process_org(leads=, contacts=, seed=)`."""

from __future__ import annotations

from crmsync.emulator.store import Org


def in_process_org(*, leads: int, contacts: int, seed: int) -> Org:
    """Returns an org of generated records, queried and written through `Org` directly."""
    return Org(
        org_id="00Dtest",
        number=1,
        leads=leads,
        contacts=contacts,
        seed=seed,
        client_id="c",
        client_secret="s",
        api_limit=10**6,
    )
