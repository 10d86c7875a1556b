"""Contact search over the store the puller writes (R16, R17, R19).

A first full sync into an empty store writes no search entry per row; it
builds the account's entries once it has succeeded, in the shared table or,
for a large account, in a table of its own. These tests run both ways (the
size that gets a table of its own is lowered for the second) and search the
way the API and console do, through `PostgresContacts.page`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, text

from crmsync.common.db.schema import Account, Contact, ContactSearchState
from crmsync.common.domain.pulled import MappedRecord
from crmsync.mapping_api.adapters.contacts import PostgresContacts
from crmsync.mapping_api.values import ContactQuery
from crmsync.puller.adapters import contact_store
from crmsync.puller.adapters.contact_rows import driver
from tests.integration.test_puller_sync import connect, puller_settings, sync

pytestmark = pytest.mark.integration


@pytest.fixture(params=["shared", "own"])
def entries_in(request, monkeypatch) -> str:
    """Where a first load's entries go: the shared table, or the account's own."""
    monkeypatch.setattr(contact_store, "OWN_TABLE_AT", 1 if request.param == "own" else 10**9)
    return request.param


async def search(sessions, account_id: str, term: str, crm_object: str | None = None) -> list[tuple]:
    """Returns (external id, type) of the contacts the search finds, as the API lists them."""
    async with sessions() as session:
        found = await PostgresContacts(session).page(account_id, ContactQuery(crm_object, term, None, 50))
    return [(c.external_id, c.crm_object) for c in found]


async def search_state(sessions, account_id: str) -> ContactSearchState | None:
    async with sessions() as session:
        return await session.get(ContactSearchState, account_id)


async def first_sync(sessions, settings, account_id: str, org):
    config = puller_settings(settings)
    await connect(sessions, settings, account_id, org)
    run = await sync(sessions, config, account_id, "full")
    assert run.status == "succeeded", run.error
    return config


async def test_r19_search_finds_contacts_by_name_email_and_company_right_after_a_first_full_sync(
    sessions, settings, account_id, make_crm_org, entries_in
) -> None:
    org = make_crm_org(leads=30, contacts=30, seed=41)
    await first_sync(sessions, settings, account_id, org)

    state = await search_state(sessions, account_id)
    assert state is not None and state.pending_since is None
    assert state.relname == (account_id if entries_in == "own" else None)
    lead, contact = org.records("Lead")[3], org.records("Contact")[4]
    accounts = {a["Id"]: a["Name"] for a in org.records("Account")}
    assert (lead["Id"], "Lead") in await search(sessions, account_id, lead["LastName"].upper())
    assert await search(sessions, account_id, contact["Email"][1:-1]) == [(contact["Id"], "Contact")]
    company = accounts[contact["AccountId"]]
    assert (contact["Id"], "Contact") in await search(sessions, account_id, company.lower())
    assert (contact["Id"], "Contact") not in await search(sessions, account_id, company, "Lead")
    assert await search(sessions, account_id, "no such contact anywhere") == []
    # Paged as the list pages: each page the next ids after the last one shown.
    async with sessions() as session:
        store, pages, after = PostgresContacts(session), [], None
        while page := await store.page(account_id, ContactQuery(None, "@", after, 7)):
            pages += [c.external_id for c in page]
            after = page[-1].id
        everyone = await store.page(account_id, ContactQuery(None, None, None, 100))
    assert pages == [c.external_id for c in everyone if c.email and "@" in c.email]
    async with sessions() as session:
        entries = await session.scalar(
            text(
                "select count(*) from contact_search where account_id = :a"
                if entries_in == "shared"
                else f'select count(*) from contact_search_parts."{account_id}"'
            ),
            {"a": account_id},
        )
    assert entries == 60  # one entry per contact, none left in the other place


async def test_r16_r19_search_follows_incremental_edits_and_deletions_and_a_full_syncs_sweep(
    sessions, settings, account_id, make_crm_org, entries_in
) -> None:
    org = make_crm_org(leads=20, contacts=20, seed=42)
    config = await first_sync(sessions, settings, account_id, org)
    edited, deleted, swept = org.records("Lead")[1], org.records("Contact")[2], org.records("Contact")[3]
    old_email = edited["Email"]
    org.edit("Lead", edited["Id"], {"LastName": "Quuxington", "Email": "q.uux@example.org"})
    org.delete("Contact", deleted["Id"], deleted_at=datetime.now(UTC) - timedelta(seconds=2))

    run = await sync(sessions, config, account_id, "incremental")

    assert run.status == "succeeded", run.error
    assert await search(sessions, account_id, "quuxington") == [(edited["Id"], "Lead")]
    assert await search(sessions, account_id, old_email) == []
    assert await search(sessions, account_id, deleted["Email"]) == []

    org.delete("Contact", swept["Id"])
    run = await sync(sessions, config, account_id, "full")  # removes what it did not see (R16)

    assert run.status == "succeeded", run.error
    assert await search(sessions, account_id, swept["Email"]) == []
    assert await search(sessions, account_id, "quuxington") == [(edited["Id"], "Lead")]


async def test_r17_a_converted_lead_is_found_once_as_its_contact(
    sessions, settings, account_id, make_crm_org, entries_in
) -> None:
    org = make_crm_org(leads=20, contacts=20, seed=43)
    config = await first_sync(sessions, settings, account_id, org)
    lead = org.records("Lead")[5]
    contact_id = org.convert_lead(lead["Id"])
    (converted,) = [c for c in org.records("Contact") if c["Id"] == contact_id]

    run = await sync(sessions, config, account_id, "incremental")

    assert run.status == "succeeded", run.error
    assert await search(sessions, account_id, converted["Email"]) == [(contact_id, "Contact")]
    assert await search(sessions, account_id, converted["Email"], "Lead") == []
    assert (lead["Id"], "Lead") not in await search(sessions, account_id, lead["LastName"])


async def test_r19_a_contact_created_locally_is_found_whatever_the_case_with_its_accents_as_written(
    sessions, settings, account_id, make_crm_org, entries_in
) -> None:
    org = make_crm_org(leads=10, contacts=10, seed=44)
    await first_sync(sessions, settings, account_id, org)
    async with sessions.begin() as session:
        session.add(
            Contact(
                account_id=account_id,
                email="Zoë.Ångström@Example.com",
                fields={"first_name": "Zoë", "last_name": "Ångström", "company": "Café Ñandú"},
            )
        )

    for term in ("ZOË", "ångström@example", "CAFÉ ñandú", "zoë ångström"):
        assert await search(sessions, account_id, term) == [(None, None)], term
    # Lower-cased, not stripped of accents: as search has always matched.
    assert await search(sessions, account_id, "zoe") == []
    assert await search(sessions, account_id, "ZOË", "Lead") == []


def _mapped_lead(n: int) -> MappedRecord:
    return MappedRecord(
        external_id=f"00Q{n:015d}",
        crm_object="Lead",
        modstamp=datetime(2026, 11, 28, 9, 0, tzinfo=UTC),
        values={"email": f"owed{n}@example.com", "last_name": f"Owed{n}"},
        account_external_id=None,
        account_name=None,
        owner_external_id=None,
        owner_name=None,
        owner_email=None,
    )


async def test_r19_while_a_first_loads_entries_are_owed_search_scans_the_contacts(
    sessions, account_id, entries_in
) -> None:
    # A first load's batch COPYed into the empty store, and the sync not finished (or crashed).
    records = [_mapped_lead(n) for n in range(5)]
    async with sessions.begin() as session:
        conn = await session.connection()
        await contact_store.apply_records(
            conn,
            account_id=account_id,
            run_id=uuid.uuid4(),
            batch=contact_store.prepare(records, empty_store=True),
            full=True,
        )
    state = await search_state(sessions, account_id)
    assert state is not None and state.pending_since is not None
    async with sessions() as session:
        assert (
            await session.scalar(
                text("select count(*) from contact_search where account_id = :a"), {"a": account_id}
            )
            == 0
        )
    assert await search(sessions, account_id, "owed3@") == [("00Q000000000000003", "Lead")]

    async with sessions.begin() as session:  # the end of the full sync
        await contact_store.full_load_finished(await session.connection(), account_id, first_load=True)

    state = await search_state(sessions, account_id)
    assert state is not None and state.pending_since is None
    assert await search(sessions, account_id, "OWED3@") == [("00Q000000000000003", "Lead")]
    async with sessions.begin() as session:  # nothing owed: a second call builds nothing
        assert not await contact_store.build_search(await driver(await session.connection()), account_id)


async def test_r21_deleting_an_account_removes_its_search_entries_and_its_own_table(
    sessions, settings, make_crm_org, monkeypatch
) -> None:
    monkeypatch.setattr(contact_store, "OWN_TABLE_AT", 1)
    account_id = f"t-{uuid.uuid4().hex[:12]}"
    async with sessions.begin() as session:
        session.add(Account(id=account_id, name=account_id))
    await first_sync(sessions, settings, account_id, make_crm_org(leads=5, contacts=5, seed=45))
    assert (await search_state(sessions, account_id)).relname == account_id

    async with sessions.begin() as session:
        await session.execute(delete(Account).where(Account.id == account_id))

    async with sessions() as session:
        own = await session.scalar(
            text("select to_regclass(:t)"), {"t": f'contact_search_parts."{account_id}"'}
        )
        left = await session.scalar(
            select(text("count(*)")).select_from(text("contact_search")).where(text("account_id = :a")),
            {"a": account_id},
        )
    assert own is None
    assert left == 0
