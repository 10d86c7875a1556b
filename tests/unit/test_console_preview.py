"""The mapping preview's computation (pure): which contacts would gain, change or lose a value,
custom rows without a type, and the console form's rows and where violations are shown."""

from __future__ import annotations

from dataclasses import replace

from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import DEFAULT_SALESFORCE_ROWS, FieldKind, MappingRow
from crmsync.common.domain.mapping_rules import Violation
from crmsync.mapping_api.console.forms import DraftRow, inputs, parse_rows, violations_by_row
from crmsync.mapping_api.field_fill import FieldFill
from crmsync.mapping_api.handlers.mapping import RowInput
from crmsync.mapping_api.handlers.preview import field_impacts, resolve_rows

BEFORE = DEFAULT_SALESFORCE_ROWS
# 10 leads (6 with a job title), 4 contacts (1 with one), 2 local-only contacts (both with one).
FILLS = {
    "Lead": FieldFill(10, {"job_title": 6, "city": 10}),
    "Contact": FieldFill(4, {"job_title": 1, "city": 0}),
    None: FieldFill(2, {"job_title": 2, "city": 1}),
}


def _with(rows, destination, **changes):  # type: ignore[no-untyped-def]
    return [replace(r, **changes) if r.destination == destination else r for r in rows]


def _impact(after):  # type: ignore[no-untyped-def]
    return {i.destination: i for i in field_impacts(BEFORE, after, FILLS)}


def test_nothing_changed_has_no_impact() -> None:
    assert field_impacts(BEFORE, list(BEFORE), FILLS) == []


def test_a_removed_row_loses_every_stored_value() -> None:
    after = [r for r in BEFORE if r.destination != "job_title"]
    impact = _impact(after)["job_title"]
    assert (impact.change, impact.gain, impact.change_value, impact.lose) == ("removed", 0, 0, 9)


def test_a_source_moved_to_another_crm_field_re_reads_every_contact_of_that_object() -> None:
    impact = _impact(_with(BEFORE, "job_title", lead_source="Name"))["job_title"]
    assert (impact.change, impact.gain, impact.change_value, impact.lose) == ("changed", 0, 10, 0)


def test_a_new_source_fills_the_empty_and_replaces_the_held_values() -> None:
    fills = {**FILLS, "Contact": FieldFill(4, {"company": 3})}
    impact = {
        i.destination: i
        for i in field_impacts(BEFORE, _with(BEFORE, "company", contact_source="Title"), fills)
    }["company"]
    assert (impact.gain, impact.change_value, impact.lose) == (1, 3, 0)


def test_a_source_taken_away_keeps_the_values_local() -> None:
    impact = _impact(_with(BEFORE, "job_title", contact_source=None))["job_title"]
    assert (impact.gain, impact.change_value, impact.lose) == (0, 0, 0)
    assert "Contact values kept" in impact.note


def test_an_added_row_with_a_source_would_fill_the_contacts_of_that_object() -> None:
    added = MappingRow("Shoe_Size", DataType.NUMBER, FieldKind.CUSTOM, lead_source="Marketing_Score__c")
    impact = _impact([*BEFORE, added])["Shoe_Size"]
    assert (impact.change, impact.gain, impact.change_value) == ("added", 10, 0)


def test_allow_push_alone_changes_no_value() -> None:
    impact = _impact(_with(BEFORE, "city", allow_push=False))["city"]
    assert (impact.gain, impact.change_value, impact.lose) == (0, 0, 0)
    assert impact.note == "Allow Push only: no value changes"


def test_a_custom_row_without_a_type_is_a_violation_on_its_row_not_an_error() -> None:
    rows = [RowInput("email", lead_source="Email"), RowInput("Shoe_Size", kind=FieldKind.CUSTOM)]
    resolved, missing = resolve_rows(rows)
    assert [r.destination for r in resolved] == ["email", "Shoe_Size"]
    assert [(v.row_index, v.rule) for v in missing] == [(1, "R6")]


def test_the_form_gives_rows_in_page_order_with_standard_types_and_allow_push() -> None:
    form = {
        "rows-1-destination": "score",
        "rows-1-kind": "standard",
        "rows-1-lead_source": "Marketing_Score__c",
        "rows-0-destination": "email",
        "rows-0-kind": "standard",
        "rows-0-lead_source": "Email",
        "rows-0-allow_push": "off",
        "rows-2-destination": "",
        "rows-2-kind": "standard",
        "csrf_token": "x",
    }
    rows = parse_rows(form)
    assert [r.destination for r in rows] == ["email", "score", ""]
    assert rows[1].data_type == "score"
    chosen, positions = inputs(rows)
    assert positions == [0, 1]
    assert chosen[0].allow_push is False and chosen[1].allow_push is None
    assert chosen[0].data_type is None  # a standard field's type comes from the catalogue


def test_a_saved_row_round_trips_through_the_form() -> None:
    for row in (*DEFAULT_SALESFORCE_ROWS, MappingRow("X", DataType.DATE, FieldKind.CUSTOM, allow_push=True)):
        back = resolve_rows([DraftRow.of(row).to_input()])[0][0]
        assert back == row


def test_violations_are_placed_on_their_rows_and_r3_on_unmapped_score_rows() -> None:
    rows = [DraftRow("email", lead_source="Email"), DraftRow(), DraftRow("score", data_type="score")]
    _, positions = inputs(rows)
    violations = [
        Violation(1, "score", "R4", "no such field"),
        Violation(None, None, "R3", "at least one score"),
        Violation(None, "email", "R2", "email must map"),
        Violation(None, None, "R9", "elsewhere"),
    ]
    on_rows, general = violations_by_row(rows, violations, positions)
    assert [v.rule for v in on_rows[2]] == ["R4", "R3"]
    assert [v.rule for v in on_rows[0]] == ["R2"]
    assert [v.rule for v in general] == ["R9"]
