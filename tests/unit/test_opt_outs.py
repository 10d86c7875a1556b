"""R23: when the CRM opting a contact in sends the platform's opt-out back to it (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crmsync.common.domain.contacts import CRM_ORIGIN, ContactValues, FieldMeta, merge_from_crm
from crmsync.common.domain.opt_outs import reasserts_opt_out

T = datetime(2026, 11, 28, 10, tzinfo=UTC)


def _opted_out(origin: str) -> ContactValues:
    return ContactValues({"opted_out": True, "city": "Oslo"}, {"opted_out": FieldMeta(origin, T)})


@pytest.mark.parametrize(
    ("origin", "incoming", "expected"),
    [
        ("form", {"opted_out": False}, True),  # the CRM opted in what the platform opted out
        ("form", {"opted_out": None}, True),
        ("list_maintenance", {"opted_out": False}, True),
        (CRM_ORIGIN, {"opted_out": False}, False),  # the CRM's own opt-out: never pushed back (R12)
        ("form", {"opted_out": True}, False),  # the CRM agrees
        ("form", {"city": "Bergen"}, False),  # the opt-out is not mapped: nothing said about it
    ],
)
def test_r23_a_crm_opt_in_sends_the_platform_s_opt_out_again(
    origin: str, incoming: dict, expected: bool
) -> None:
    before = _opted_out(origin)
    merge = merge_from_crm(before, incoming, modstamp=T + timedelta(hours=1))
    assert merge.values.fields["opted_out"] is True  # never cleared
    assert reasserts_opt_out(before, incoming, merge) is expected


def test_r23_a_contact_that_was_not_opted_out_is_not_sent_again() -> None:
    before = ContactValues({"opted_out": False}, {"opted_out": FieldMeta("form", T)})
    incoming = {"opted_out": False}
    merge = merge_from_crm(before, incoming, modstamp=T - timedelta(hours=1))
    assert not reasserts_opt_out(before, incoming, merge)
