"""Resolving the contacts a batch's events name: by id, external id or e-mail."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from crmsync.common.db.ids import new_id
from crmsync.common.domain.contacts import FieldMeta
from crmsync.common.domain.fields import EMAIL
from crmsync.common.messages import ContactChanged
from crmsync.pusher.handlers.ports import ContactRefs, ContactStore, StoredContact

# Several contacts may share an e-mail (a Lead and a Contact): a CRM Contact is
# preferred, then a Lead, then a local one; the oldest among equals.
_RANK = {"Contact": 0, "Lead": 1, None: 2}


async def find_contacts(
    contacts: ContactStore, account_id: str, events: Sequence[ContactChanged]
) -> ContactIndex:
    """Returns (and locks) the contacts the events name, indexed."""
    refs = [e.contact for e in events]
    found = await contacts.find(
        account_id,
        ContactRefs(
            ids=tuple(r.id for r in refs if r.id is not None),
            external_ids=tuple(r.external_id for r in refs if r.external_id is not None),
            emails_lower=tuple(r.email.lower() for r in refs if r.email is not None),
        ),
    )
    return ContactIndex(found)


def unknown_contact(event: ContactChanged) -> str:
    """Returns why no contact was found for the event."""
    ref = event.contact
    return "contact.id: unknown contact" if ref.id is not None else "contact.external_id: unknown CRM record"


class ContactIndex:
    """The batch's contacts by id, external id and e-mail; new ones are added as events need them."""

    def __init__(self, contacts: Sequence[StoredContact]) -> None:
        self._all: dict[uuid.UUID, StoredContact] = {}
        self._by_external: dict[str, StoredContact] = {}
        self._by_email: dict[str, StoredContact] = {}
        for c in sorted(contacts, key=lambda c: _RANK.get(c.crm_object, 2)):
            self._add(c)

    def _add(self, contact: StoredContact) -> None:
        self._all[contact.id] = contact
        if contact.external_id:
            self._by_external.setdefault(contact.external_id, contact)
        if contact.email:
            self._by_email.setdefault(contact.email.lower(), contact)

    def all(self) -> list[StoredContact]:
        return list(self._all.values())

    def find(self, event: ContactChanged) -> StoredContact | None:
        """Returns the event's contact; a new local one for an e-mail nobody has yet."""
        ref = event.contact
        if ref.id is not None:
            return self._all.get(ref.id)
        if ref.external_id is not None:
            return self._by_external.get(ref.external_id)
        assert ref.email is not None
        found = self._by_email.get(ref.email.lower())
        if found is not None:
            return found
        meta = FieldMeta(event.source.value, event.occurred_at)
        contact = StoredContact(
            id=new_id(),
            account_id=event.account_id,
            crm_object=None,
            external_id=None,
            email=ref.email,
            fields={EMAIL: ref.email},
            raw_meta={EMAIL: meta.to_json()},
            new=True,
        )
        self._add(contact)
        return contact
