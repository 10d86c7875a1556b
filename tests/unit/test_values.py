"""R22 at the edge: a value that does not fit its field's data type or its CRM field's length is named."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import FieldKind, Mapping, MappingRow, default_salesforce_mapping
from crmsync.common.domain.values import (
    change_problems,
    field_data_type,
    looks_like_email,
    too_long,
    type_problem,
)

FITS = [
    (DataType.SCORE, 42),
    (DataType.SCORE, 42.5),
    (DataType.SCORE, "42"),
    (DataType.NUMBER, "-1.5e3"),
    (DataType.BOOLEAN, True),
    (DataType.BOOLEAN, "False"),
    (DataType.DATE, "2026-12-04"),
    (DataType.DATETIME, "2026-12-04T10:00:00Z"),
    (DataType.DATETIME, "2026-12-04T10:00:00+01:00"),
    (DataType.EMAIL, "ada@example.com"),
    (DataType.TEXT, "Chief Form Officer"),
    (DataType.TEXT, 12345),
    (DataType.MULTI_TEXT, ["a", "b"]),
    (DataType.MULTI_TEXT, "a;b"),
]

REFUSED = [
    (DataType.SCORE, "ninety", "expected a number"),
    (DataType.SCORE, True, "expected a number"),
    (DataType.NUMBER, math.inf, "finite"),
    (DataType.NUMBER, [1], "expected a number"),
    (DataType.BOOLEAN, "yes", "true or false"),
    (DataType.BOOLEAN, 1, "true or false"),
    (DataType.DATE, "04/12/2026", "YYYY-MM-DD"),
    (DataType.DATE, "2026-02-30", "YYYY-MM-DD"),
    (DataType.DATETIME, "tomorrow", "ISO 8601"),
    (DataType.EMAIL, "not an address", "e-mail"),
    (DataType.EMAIL, "ada@localhost", "e-mail"),
    (DataType.TEXT, {"nested": "object"}, "expected text"),
    (DataType.TEXT, False, "expected text"),
    (DataType.MULTI_TEXT, ["a", 2], "list of texts"),
]


@pytest.mark.parametrize(("data_type", "value"), FITS)
def test_r22_a_value_of_the_fields_type_fits(data_type: DataType, value: object) -> None:
    assert type_problem(data_type, value) is None


@pytest.mark.parametrize(("data_type", "value", "said"), REFUSED)
def test_r22_a_value_of_another_type_is_refused_saying_what_was_expected(
    data_type: DataType, value: object, said: str
) -> None:
    problem = type_problem(data_type, value)
    assert problem is not None and said in problem


@pytest.mark.parametrize("data_type", list(DataType))
def test_r22_null_fits_every_type_it_clears_the_field(data_type: DataType) -> None:
    assert type_problem(data_type, None) is None


@given(st.integers() | st.floats(allow_nan=False, allow_infinity=False))
def test_r22_every_finite_number_fits_a_score(value: float) -> None:
    assert type_problem(DataType.SCORE, value) is None
    assert type_problem(DataType.SCORE, repr(value)) is None


@given(st.text().filter(lambda t: t.strip().lower() not in {"true", "false"}))
def test_r22_only_true_and_false_texts_fit_a_boolean(text: str) -> None:
    assert type_problem(DataType.BOOLEAN, text) is not None


def test_r22_change_problems_name_the_field_and_its_type_from_the_mapping_or_the_catalogue() -> None:
    mapping = Mapping(
        version=1,
        rows=(
            *default_salesforce_mapping().rows,
            MappingRow("renewal_date", DataType.DATE, FieldKind.CUSTOM, contact_source="Renewal__c"),
        ),
    )
    problems = change_problems(
        mapping,
        {"job_title": "Fine", "score": "ninety", "renewal_date": "soon", "unknown_field": {"x": 1}},
    )
    assert [(p.field, p.data_type) for p in problems] == [
        ("score", DataType.SCORE),
        ("renewal_date", DataType.DATE),
    ]
    assert str(problems[0]).startswith("score (score): expected a number")


def test_a_standard_field_has_its_catalogue_type_even_when_not_mapped() -> None:
    empty = Mapping(version=1, rows=())
    assert field_data_type(empty, "fit_score") == DataType.SCORE
    assert field_data_type(empty, "no_such_field") is None


def test_r22_a_value_longer_than_the_crm_field_is_named_with_the_limit() -> None:
    values = {"Title": "x" * 100_000, "LastName": "Lovelace", "NumberOfEmployees": 10**9, "Industry": None}
    lengths = {"Title": 128, "LastName": 80, "NumberOfEmployees": None, "Industry": 40}
    assert list(too_long(values, lengths)) == [("Title", 128, 100_000)]


def test_r22_a_multi_text_is_measured_as_the_picklist_the_crm_receives() -> None:
    assert list(too_long({"Products__c": ["abc", "def"]}, {"Products__c": 7})) == []
    assert list(too_long({"Products__c": ["abc", "defg"]}, {"Products__c": 7})) == [("Products__c", 7, 8)]


@given(st.text(max_size=300), st.integers(min_value=1, max_value=300))
def test_r22_a_text_is_too_long_exactly_when_it_has_more_characters_than_the_limit(
    text: str, limit: int
) -> None:
    assert bool(list(too_long({"F": text}, {"F": limit}))) == (len(text) > limit)


@pytest.mark.parametrize(
    ("text", "fits"),
    [("ada@example.com", True), ("ada@example", False), ("@example.com", False), ("a da@example.com", False)],
)
def test_the_one_email_shape_check(text: str, fits: bool) -> None:
    assert looks_like_email(text) is fits
