"""Opt-outs are one-way safe (R23), the puller's part: a local opt-out outlives the CRM
record (a suppression entry by e-mail, applied when the person comes back), and a CRM
opt-in after a local opt-out puts the opt-out back on the next outbound job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from crmsync.common.db.schema import Contact, EmailSuppression
from crmsync.common.domain.opt_outs import SUPPRESSION_ORIGIN
from tests.integration.test_puller_sync import give_local_value, sync, synced
from tests.support.pusher import outbound_job, publish, running_pusher, wait_logged

pytestmark = pytest.mark.integration


async def _contact(sessions, account_id: str, *, external_id: str | None = None, email: str | None = None):
    query = select(Contact).where(Contact.account_id == account_id)
    if external_id is not None:
        query = query.where(Contact.external_id == external_id)
    if email is not None:
        query = query.where(Contact.email_lower == email.lower())
    async with sessions() as session:
        return await session.scalar(query)


async def _suppressed(sessions, account_id: str) -> set[str]:
    async with sessions() as session:
        rows = await session.scalars(
            select(EmailSuppression).where(EmailSuppression.account_id == account_id)
        )
        return {r.email_lower for r in rows}


async def _send_outbound(sessions, settings, account_id: str) -> None:
    job = outbound_job(account_id)
    async with running_pusher(settings) as pusher:
        await publish(pusher, [job])
        await wait_logged(sessions, account_id=account_id, event_ids=[f"outbound:{job.job_id}"])


def _lead_with_email(org) -> dict:
    return next(r for r in org.records("Lead") if r.get("Email") and not r.get("IsConverted"))


@pytest.mark.parametrize("kind", ["incremental", "full"])
async def test_r23_a_local_opt_out_outlives_its_deleted_crm_record_and_opts_out_the_person_when_they_come_back(
    sessions, settings, account_id, make_crm_org, kind
) -> None:
    org = make_crm_org(leads=6, contacts=4, seed=23)
    config = await synced(sessions, settings, account_id, org)
    lead = _lead_with_email(org)
    await give_local_value(sessions, account_id, lead["Id"], "opted_out", True)
    org.delete("Lead", lead["Id"])

    deleted = await sync(sessions, config, account_id, kind)  # the deleted feed, or the full sync's sweep

    assert deleted.status == "succeeded", deleted.error
    assert await _contact(sessions, account_id, external_id=lead["Id"]) is None  # R16
    assert await _suppressed(sessions, account_id) == {lead["Email"].lower()}

    back = org.create(
        "Lead",
        {"LastName": "Again", "Company": "Back Ltd", "Email": lead["Email"], "HasOptedOutOfEmail": False},
    )
    await sync(sessions, config, account_id, "incremental")

    row = await _contact(sessions, account_id, external_id=back)
    assert row.fields["opted_out"] is True  # opted out at once
    assert row.field_meta["opted_out"]["origin"] == SUPPRESSION_ORIGIN
    assert row.outbound_pending_at is not None
    await _send_outbound(sessions, settings, account_id)
    assert org.get("Lead", back)["HasOptedOutOfEmail"] is True  # the outbound job sent it


async def test_r23_a_deleted_record_that_was_not_opted_out_leaves_no_suppression(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=4, contacts=2, seed=24)
    config = await synced(sessions, settings, account_id, org)
    lead = _lead_with_email(org)
    org.edit("Lead", lead["Id"], {"HasOptedOutOfEmail": False})
    await sync(sessions, config, account_id, "incremental")
    org.delete("Lead", lead["Id"])
    await sync(sessions, config, account_id, "incremental")
    assert await _suppressed(sessions, account_id) == set()
    back = org.create("Lead", {"LastName": "Again", "Company": "Back Ltd", "Email": lead["Email"]})
    await sync(sessions, config, account_id, "incremental")
    row = await _contact(sessions, account_id, external_id=back)
    assert row.fields.get("opted_out") is not True


async def test_r23_a_crm_opt_in_after_a_local_opt_out_was_sent_puts_it_back_on_the_next_outbound_job(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=4, contacts=2, seed=25)
    config = await synced(sessions, settings, account_id, org)
    lead = _lead_with_email(org)
    contact_id = await give_local_value(sessions, account_id, lead["Id"], "opted_out", True)
    async with sessions.begin() as session:
        await session.execute(
            update(Contact).where(Contact.id == contact_id).values(outbound_pending_at=datetime.now(UTC))
        )
    await _send_outbound(sessions, settings, account_id)
    assert org.get("Lead", lead["Id"])["HasOptedOutOfEmail"] is True
    assert (await _contact(sessions, account_id, external_id=lead["Id"])).outbound_pending_at is None

    org.edit(
        "Lead",
        lead["Id"],
        {"HasOptedOutOfEmail": False},
        system_modstamp=datetime.now(UTC) + timedelta(minutes=1),
    )
    await sync(sessions, config, account_id, "incremental")

    row = await _contact(sessions, account_id, external_id=lead["Id"])
    assert row.fields["opted_out"] is True  # a CRM opt-in never clears a local opt-out
    assert row.outbound_pending_at is not None  # and the opt-out goes out again
    await _send_outbound(sessions, settings, account_id)
    assert org.get("Lead", lead["Id"])["HasOptedOutOfEmail"] is True
