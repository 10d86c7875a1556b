"""Values checked at the pusher's edge (R22): a value of the wrong data type is dead-lettered and
nothing of its event is stored; a value longer than its CRM field holds is a permanent failure
without a CRM call."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from crmsync.common.messages import ContactChanged
from crmsync.pusher.values import StoredContact
from tests.unit.pusher_fakes import Pusher

ACCOUNT = "t-edge"
LEAD_ID = "00Q000000000001AAA"


def _event(changes: dict[str, Any], *, external_id: str = LEAD_ID, **ref: Any) -> ContactChanged:
    return ContactChanged.model_validate(
        {
            "event_id": uuid.uuid4().hex,
            "account_id": ACCOUNT,
            "occurred_at": datetime.now(UTC),
            "source": "form",
            "contact": ref or {"external_id": external_id},
            "changes": changes,
        }
    )


def _pusher_with_lead() -> tuple[Pusher, StoredContact]:
    pusher = Pusher()
    pusher.store.add_account(ACCOUNT)
    contact = StoredContact(
        id=uuid.uuid4(),
        account_id=ACCOUNT,
        crm_object="Lead",
        external_id=LEAD_ID,
        email="ada@example.com",
        fields={"email": "ada@example.com", "first_name": "Ada", "score": 10},
        raw_meta={},
        crm_modstamp=datetime.now(UTC) - timedelta(days=1),
    )
    pusher.store.rows[contact.id] = contact
    return pusher, contact


async def test_r22_a_score_of_ninety_in_words_goes_to_the_dlq_naming_the_field_and_type() -> None:
    pusher, contact = _pusher_with_lead()
    bad = _event({"score": "ninety", "first_name": "Augusta"})

    logged = await pusher.handle(bad)

    ((event_id, reason),) = pusher.dead_letters.letters
    assert event_id == bad.event_id
    assert reason.startswith("changes.score: expected a number, got 'ninety'")
    assert "score" in reason.split(":", 1)[1]  # the data type is named too
    assert (logged[bad.event_id].status, logged[bad.event_id].error_code) == ("skipped", "INVALID_EVENT")
    # Nothing of the event is stored, not even its valid value.
    assert pusher.store.rows[contact.id].fields == contact.fields
    assert pusher.crm.writes == []


async def test_r22_a_wrong_type_for_a_new_contact_stores_no_contact() -> None:
    pusher, _ = _pusher_with_lead()
    bad = _event({"score": "ninety"}, email="new@example.com")

    await pusher.handle(bad)

    assert pusher.store.contact(email="new@example.com") is None
    assert [e for e, _ in pusher.dead_letters.letters] == [bad.event_id]


async def test_r22_a_job_title_of_100000_characters_fails_naming_the_field_and_limit_without_a_crm_call() -> (
    None
):
    pusher, contact = _pusher_with_lead()
    long_title = _event({"job_title": "x" * 100_000})
    fine = _event({"first_name": "Augusta"}, external_id="00Q000000000002AAA")
    other = StoredContact(
        id=uuid.uuid4(),
        account_id=ACCOUNT,
        crm_object="Lead",
        external_id="00Q000000000002AAA",
        email="b@example.com",
        fields={"email": "b@example.com"},
        raw_meta={},
        crm_modstamp=datetime.now(UTC) - timedelta(days=1),
    )
    pusher.store.rows[other.id] = other

    logged = await pusher.handle(long_title, fine)

    entry = logged[long_title.event_id]
    assert (entry.status, entry.error_code) == ("failed", "VALUE_TOO_LONG")
    assert "job_title" in (entry.error_message or "") and "Title" in (entry.error_message or "")
    assert "100000 characters" in (entry.error_message or "") and "128" in (entry.error_message or "")
    assert pusher.dead_letters.letters == []
    # No CRM call for it; the other event's write goes on.
    assert [w.crm_id for w in pusher.crm.writes] == ["00Q000000000002AAA"]
    assert logged[fine.event_id].status == "succeeded"
    # The value is kept locally: bad input loses no data.
    assert pusher.store.rows[contact.id].fields["job_title"] == "x" * 100_000


async def test_r22_a_value_that_fits_its_field_exactly_is_sent() -> None:
    pusher, _ = _pusher_with_lead()
    exact = _event({"job_title": "x" * 128})

    logged = await pusher.handle(exact)

    assert logged[exact.event_id].status == "succeeded"
    (write,) = pusher.crm.writes
    assert write.values == {"Title": "x" * 128}
