"""A deal (an opportunity) as the store keeps it, linked to its company and contact (R5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal


@dataclass(frozen=True)
class PulledDeal:
    """A CRM deal read through the connector's deal roles."""

    external_id: str
    modified_at: datetime
    name: str | None = None
    stage: str | None = None
    amount: Decimal | None = None
    close_date: date | None = None
    company_external_id: str | None = None
    contact_external_id: str | None = None
