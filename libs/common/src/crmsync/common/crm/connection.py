"""A stored CRM connection as a frozen value: what a connector is built from."""

from __future__ import annotations

from crmsync.common.domain.account import CrmConnectionInfo

__all__ = ["CrmConnectionInfo"]
