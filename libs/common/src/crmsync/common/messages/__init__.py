"""Event and job models for every topic of the design: the public contracts.

Frozen pydantic models with extra="forbid"; invalid input is rejected at the
consumer's edge and goes to the dead-letter topic with the reason.
"""

from crmsync.common.messages.models import (
    ContactChanged,
    ContactRef,
    CrmCreate,
    DeadLetter,
    EventSource,
    Message,
    RunOutbound,
    RunSync,
    SyncKind,
    SyncReason,
    contact_change_key,
)

__all__ = [
    "ContactChanged",
    "ContactRef",
    "CrmCreate",
    "DeadLetter",
    "EventSource",
    "Message",
    "RunOutbound",
    "RunSync",
    "SyncKind",
    "SyncReason",
    "contact_change_key",
]
