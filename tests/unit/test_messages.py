"""The public contracts: what a producer may send, and what is refused (R22)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from crmsync.common.kafka.consumer import describe_validation_error
from crmsync.common.messages import ContactChanged, contact_change_key

VALID = {
    "event_id": "6f1c",
    "account_id": "acme",
    "occurred_at": "2026-11-28T10:00:00Z",
    "source": "form",
    "contact": {"email": "Ada@Example.com"},
    "changes": {"first_name": "Ada", "score": 42, "opted_out": True},
    "crm_create": {"object": "Lead"},
}


def test_the_design_example_event_is_valid() -> None:
    event = ContactChanged.model_validate(VALID)
    assert event.crm_create is not None and event.crm_create.object == "Lead"
    assert contact_change_key(event) == b"acme:ada@example.com"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"source": "fax"}, "source"),
        ({"occurred_at": "2026-11-28T10:00:00"}, "occurred_at"),  # no time zone
        ({"contact": {}}, "contact"),
        ({"contact": {"email": "a@b.co", "external_id": "00Q1"}}, "contact"),
        ({"contact": {"email": "not-an-email"}}, "contact.email"),
        ({"account_id": "Acme Inc"}, "account_id"),
        ({"unknown": 1}, "unknown"),
        ({"changes": {}, "crm_create": None}, "(message)"),
        ({"crm_create": {"object": "Opportunity"}}, "crm_create.object"),
        ({"changes": {"first_name": {"nested": "no"}}}, "changes.first_name"),
    ],
)
def test_r22_an_invalid_event_is_refused_naming_the_field(patch: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        ContactChanged.model_validate({**VALID, **patch})
    assert field in describe_validation_error(err.value)


def test_events_are_frozen() -> None:
    event = ContactChanged.model_validate(VALID)
    with pytest.raises(ValidationError):
        event.event_id = "other"  # type: ignore[misc]
