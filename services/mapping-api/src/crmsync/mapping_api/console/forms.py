"""The Contact Mapping form: rows as the browser sends them, and back to use-case inputs."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from crmsync.common.domain.fields import STANDARD_FIELDS_BY_KEY, DataType
from crmsync.common.domain.mapping import FieldKind, MappingRow
from crmsync.common.domain.mapping_rules import Violation
from crmsync.mapping_api.handlers.mapping import RowInput

ROW_KEY = re.compile(r"^rows-(\d{1,4})-(destination|kind|lead_source|contact_source|data_type|allow_push)$")
ALLOW_PUSH = {"default": None, "on": True, "off": False}
MAX_ROWS = 500


@dataclass(frozen=True)
class DraftRow:
    """A row being edited: text as the form holds it; a blank destination is a row not yet chosen."""

    destination: str = ""
    kind: str = FieldKind.STANDARD.value
    lead_source: str = ""
    contact_source: str = ""
    data_type: str = ""
    allow_push: str = "default"

    @classmethod
    def of(cls, row: MappingRow) -> DraftRow:
        push = next(k for k, v in ALLOW_PUSH.items() if v is row.allow_push)
        return cls(
            row.destination,
            row.kind.value,
            row.lead_source or "",
            row.contact_source or "",
            row.data_type.value,
            push,
        )

    @property
    def is_custom(self) -> bool:
        return self.kind == FieldKind.CUSTOM.value

    @property
    def is_score(self) -> bool:
        return self.data_type == DataType.SCORE.value

    def to_input(self) -> RowInput:
        kind = FieldKind.CUSTOM if self.is_custom else FieldKind.STANDARD
        data_type = DataType(self.data_type) if self.data_type in DataType._value2member_map_ else None
        return RowInput(
            destination=self.destination.strip(),
            kind=kind,
            lead_source=self.lead_source or None,
            contact_source=self.contact_source or None,
            # A standard field's type comes from the catalogue.
            data_type=data_type if kind == FieldKind.CUSTOM else None,
            allow_push=ALLOW_PUSH.get(self.allow_push),
        )


def parse_rows(form: Mapping[str, str]) -> list[DraftRow]:
    """Returns the rows of a submitted form, in their order on the page."""
    values: dict[int, dict[str, str]] = {}
    for key, value in form.items():
        match = ROW_KEY.match(key)
        if match and isinstance(value, str):
            values.setdefault(int(match.group(1)), {})[match.group(2)] = value.strip()[:200]
    rows = [DraftRow(**values[i]) for i in sorted(values)[:MAX_ROWS]]
    return [_with_standard_type(r) for r in rows]


def _with_standard_type(row: DraftRow) -> DraftRow:
    if row.is_custom:
        return row

    standard = STANDARD_FIELDS_BY_KEY.get(row.destination)
    return DraftRow(**{**vars(row), "data_type": standard.data_type.value if standard else ""})


def inputs(rows: Sequence[DraftRow]) -> tuple[list[RowInput], list[int]]:
    """Returns the chosen rows as use-case inputs, and for each its index on the page."""
    positions = [i for i, r in enumerate(rows) if r.destination.strip()]
    return [rows[i].to_input() for i in positions], positions


def violations_by_row(
    rows: Sequence[DraftRow], violations: Sequence[Violation], positions: Sequence[int]
) -> tuple[dict[int, list[Violation]], list[Violation]]:
    """Returns the violations placed on the page's rows, and those that concern no row.

    A violation of the mapping as a whole is shown on the row it names (R2: E-mail Address),
    and R3 on every score row that is not mapped to the CRM.
    """
    on_rows: dict[int, list[Violation]] = {}
    general: list[Violation] = []
    for violation in violations:
        if violation.row_index is not None and violation.row_index < len(positions):
            on_rows.setdefault(positions[violation.row_index], []).append(violation)
            continue
        if violation.rule == "R3":
            targets = [i for i, r in enumerate(rows) if r.is_score and r.destination]
        else:
            targets = [
                i
                for i, r in enumerate(rows)
                if violation.destination and r.destination == violation.destination
            ]
        for i in targets:
            on_rows.setdefault(i, []).append(violation)
        if not targets:
            general.append(violation)
    return on_rows, general
