"""Pure parts of the mapping API: account ids from names, key hashing, version diffs, error fields."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import DEFAULT_SALESFORCE_ROWS, FieldKind, MappingRow
from crmsync.mapping_api import schemas as schemas_module
from crmsync.mapping_api.bootstrap import bootstrap
from crmsync.mapping_api.entrypoints.errors import field_location
from crmsync.mapping_api.handlers.accounts import ACCOUNT_ID, hash_key, slug_for
from crmsync.mapping_api.handlers.mapping import diff_rows, source_pairs
from crmsync.mapping_api.schemas import storable
from crmsync.mapping_api.settings import Settings


def test_account_ids_derive_from_names() -> None:
    assert slug_for("Acme Corp.") == "acme-corp"
    assert slug_for("  Globex -- International  ") == "globex-international"
    assert slug_for("!!!") == ""


@given(st.text(max_size=200))
def test_a_derived_account_id_is_a_valid_id_or_empty(name) -> None:
    slug = slug_for(name)
    assert slug == "" or ACCOUNT_ID.match(slug)


def test_keys_are_stored_as_sha256_hex() -> None:
    assert hash_key("crmsync_abc") == hashlib.sha256(b"crmsync_abc").hexdigest()


def test_a_diff_names_added_removed_and_changed_rows() -> None:
    before = DEFAULT_SALESFORCE_ROWS
    company = next(r for r in before if r.destination == "company")
    after = [
        *(r for r in before if r.destination not in ("website", "company")),
        MappingRow("company", company.data_type, lead_source="Company", allow_push=False),
        MappingRow("Notes", DataType.TEXT, FieldKind.CUSTOM),
    ]
    added, removed, changed = diff_rows(before, after)
    assert [r.destination for r in added] == ["Notes"]
    assert [r.destination for r in removed] == ["website"]
    assert changed == [("company", {"allow_push": [None, False]})]


@given(st.permutations(DEFAULT_SALESFORCE_ROWS))
def test_r15_reordering_rows_adds_no_source(rows) -> None:
    assert source_pairs(rows) == source_pairs(DEFAULT_SALESFORCE_ROWS)


def test_r22_error_locations_read_as_request_fields() -> None:
    assert field_location(("body", "rows", 3, "data_type")) == "rows[3].data_type"
    assert field_location(("query", "limit")) == "limit"
    assert field_location(("body",)) == "body"


def test_r22_text_postgres_cannot_store_is_refused() -> None:
    assert storable("Ada") == "Ada"
    for bad in ("a\x00b", "\ud800"):
        try:
            storable(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


def test_the_openapi_document_has_an_example_for_every_body_and_parameter() -> None:
    spec = bootstrap(Settings(environment="test")).openapi()
    schemas = spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                assert "examples" in parameter or "examples" in parameter["schema"], (
                    method,
                    path,
                    parameter["name"],
                )
            body = operation.get("requestBody")
            if body:
                schema = body["content"]["application/json"]["schema"]
                refs = [schema] if "$ref" in schema else schema.get("anyOf", [])
                for ref in refs:
                    if "$ref" in ref:
                        assert "examples" in schemas[ref["$ref"].rsplit("/", 1)[1]], (method, path)


def test_every_example_in_the_openapi_document_is_valid() -> None:
    models = [
        cls
        for cls in vars(schemas_module).values()
        if isinstance(cls, type)
        and issubclass(cls, BaseModel)
        and cls.__module__.startswith(f"{schemas_module.__name__}.")
    ]
    checked = 0
    for model in models:
        for example in (model.model_config.get("json_schema_extra") or {}).get("examples", []):
            model.model_validate(example)
            checked += 1
    assert checked >= 20
