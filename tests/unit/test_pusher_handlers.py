"""The pusher's handlers over in-memory fakes of their ports: R9, R12, R13, R22.

The rules of `decide_push` have their table-driven tests (test_push_decisions);
these check what the handlers make of them: the push log, the contacts, the
CRM's writes, the dead letters. The same rules through the real broker,
database and CRM are in tests/integration/test_pusher.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from crmsync.common.messages import ContactChanged
from crmsync.pusher.values import StoredContact
from tests.unit.pusher_fakes import Pusher

ACCOUNT = "t-unit"
LEAD_ID = "00Q000000000001AAA"


def _event(
    *,
    changes: dict[str, Any],
    email: str | None = None,
    external_id: str | None = None,
    contact_id: uuid.UUID | None = None,
    account_id: str = ACCOUNT,
    source: str = "form",
    occurred_at: datetime | None = None,
    crm_create: str | None = None,
) -> ContactChanged:
    ref = {"email": email, "external_id": external_id, "id": contact_id}
    return ContactChanged.model_validate(
        {
            "event_id": uuid.uuid4().hex,
            "account_id": account_id,
            "occurred_at": occurred_at or datetime.now(UTC),
            "source": source,
            "contact": {k: v for k, v in ref.items() if v is not None},
            "changes": changes,
            "crm_create": {"object": crm_create} if crm_create else None,
        }
    )


def _pusher_with_lead(*, pulled_at: datetime | None = None) -> Pusher:
    """An account with a connection and one contact pulled from a CRM Lead (every value the CRM's)."""
    pusher = Pusher()
    pusher.store.add_account(ACCOUNT)
    contact = StoredContact(
        id=uuid.uuid4(),
        account_id=ACCOUNT,
        crm_object="Lead",
        external_id=LEAD_ID,
        email="ada@example.com",
        fields={"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"},
        raw_meta={},
        crm_modstamp=pulled_at or datetime.now(UTC) - timedelta(days=1),
    )
    pusher.store.rows[contact.id] = contact
    return pusher


async def test_r9_a_record_is_created_only_for_an_event_with_crm_create() -> None:
    pusher = Pusher()
    pusher.store.add_account(ACCOUNT)
    plain = _event(email="grace@example.com", changes={"first_name": "Grace"})
    create = _event(email="grace@example.com", changes={"last_name": "Hopper"}, crm_create="Lead")

    logged = await pusher.handle(plain)
    assert (logged[plain.event_id].operation, logged[plain.event_id].status) == ("none", "skipped")
    assert logged[plain.event_id].decisions == {"first_name": "no_crm_record"}
    assert pusher.crm.writes == []

    logged = await pusher.handle(create)
    entry = logged[create.event_id]
    assert (entry.operation, entry.status) == ("create", "succeeded")
    (write,) = pusher.crm.writes
    assert (write.operation, write.crm_object) == ("create", "Lead")
    contact = pusher.store.contact(email="grace@example.com")
    assert contact is not None
    assert (contact.crm_object, contact.external_id) == ("Lead", entry.crm_id)


async def test_r12_a_value_that_came_from_the_crm_is_not_pushed_back() -> None:
    pusher = _pusher_with_lead()
    echo = _event(
        external_id=LEAD_ID, source="list_maintenance", changes={"first_name": "Ada", "last_name": "Lovelace"}
    )

    logged = await pusher.handle(echo)

    assert logged[echo.event_id].decisions == {"first_name": "from_crm", "last_name": "from_crm"}
    assert (logged[echo.event_id].operation, logged[echo.event_id].status) == ("none", "skipped")
    assert pusher.crm.writes == []


async def test_r13_a_newer_crm_value_is_kept() -> None:
    pulled_at = datetime.now(UTC)
    pusher = _pusher_with_lead(pulled_at=pulled_at)
    older = _event(
        external_id=LEAD_ID,
        changes={"first_name": "Stale", "job_title": "Countess"},
        occurred_at=pulled_at - timedelta(minutes=1),
    )

    logged = await pusher.handle(older)

    assert logged[older.event_id].decisions["first_name"] == "crm_newer"
    assert all("FirstName" not in w.values for w in pusher.crm.writes)
    (contact,) = pusher.store.rows.values()
    assert contact.fields["first_name"] == "Ada"


async def test_r22_invalid_events_go_to_the_dlq_with_their_reason_and_the_rest_goes_on() -> None:
    pusher = _pusher_with_lead()
    unknown_field = _event(external_id=LEAD_ID, changes={"shoe_size": 42})
    unknown_contact = _event(contact_id=uuid.uuid4(), changes={"first_name": "Nobody"})
    unknown_record = _event(external_id="00Q000000000000XYZ", changes={"first_name": "Nobody"})
    unknown_account = _event(account_id="no-such-account", email="a@example.com", changes={"first_name": "A"})
    good = _event(external_id=LEAD_ID, changes={"job_title": "Engineer"})

    logged = await pusher.handle(unknown_field, unknown_contact, unknown_record, unknown_account, good)

    reasons = dict(pusher.dead_letters.letters)
    assert len(pusher.dead_letters.letters) == 4
    assert reasons[unknown_field.event_id].startswith("changes.shoe_size: unknown field")
    assert reasons[unknown_contact.event_id] == "contact.id: unknown contact"
    assert reasons[unknown_record.event_id] == "contact.external_id: unknown CRM record"
    assert reasons[unknown_account.event_id] == "account_id: unknown account"
    for invalid in (unknown_field, unknown_contact, unknown_record):
        assert (logged[invalid.event_id].status, logged[invalid.event_id].error_code) == (
            "skipped",
            "INVALID_EVENT",
        )
    assert unknown_account.event_id not in logged
    assert logged[good.event_id].status == "succeeded"
    (write,) = pusher.crm.writes
    assert (write.crm_id, write.values) == (LEAD_ID, {"Title": "Engineer"})


async def test_r22_a_redelivered_invalid_event_is_dead_lettered_once() -> None:
    pusher = _pusher_with_lead()
    invalid = _event(external_id=LEAD_ID, changes={"shoe_size": 42})

    await pusher.handle(invalid)
    await pusher.handle(invalid)

    assert [e for e, _ in pusher.dead_letters.letters] == [invalid.event_id]
