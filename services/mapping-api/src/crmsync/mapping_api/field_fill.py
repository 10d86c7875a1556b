"""A frozen value crossing the contact store's port for a mapping preview."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldFill:
    """How many contacts of one CRM object (None: local-only contacts) there are, and how many
    hold a value of each asked field."""

    total: int
    with_value: Mapping[str, int]
