"""A full re-sync skips the records a row already holds without merging them.

The shortcut must agree with the merge it spares: whenever it says "already
held", merging the record would change no value and log no conflict (R13,
R23), whatever local values and times the row carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from crmsync.common.domain.contacts import ContactValues, merge_from_crm
from crmsync.common.domain.pulled import MappedRecord
from crmsync.common.domain.resync import already_holds, merge_changes_nothing, needs_no_write

STAMP = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
NAMES = ("email", "first_name", "job_title", "opted_out", "score")
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["a", "b", ""]))
META = st.fixed_dictionaries(
    {
        "origin": st.sampled_from(["crm", "form", "user"]),
        "at": st.sampled_from([STAMP - timedelta(hours=1), STAMP, STAMP + timedelta(hours=1)]).map(
            datetime.isoformat
        ),
    }
)


@dataclass(frozen=True)
class Row:
    """A stored contact row, as the re-sync rules see it."""

    external_id: str | None
    crm_object: str | None
    crm_modstamp: datetime | None
    account_external_id: str | None
    owner_external_id: str | None
    fields: dict[str, Any]
    meta: dict[str, Any]

    @property
    def values(self) -> ContactValues:
        return ContactValues.from_stored(self.fields, self.meta, self.crm_modstamp)

    def already_holds(self, record: MappedRecord) -> bool:
        return already_holds(self, record)


def _row(fields: dict[str, Any], meta: dict[str, Any], **identity: Any) -> Row:
    return Row(
        external_id=identity.get("external_id", "00Q1"),
        crm_object="Lead",
        crm_modstamp=identity.get("crm_modstamp", STAMP),
        account_external_id=None,
        owner_external_id=identity.get("owner_external_id", "005A"),
        fields=fields,
        meta=meta,
    )


def _record(values: dict[str, Any], *, modstamp: datetime = STAMP) -> MappedRecord:
    return MappedRecord(
        external_id="00Q1",
        crm_object="Lead",
        modstamp=modstamp,
        values=values,
        account_external_id=None,
        account_name=None,
        owner_external_id="005A",
        owner_name=None,
        owner_email=None,
    )


@given(
    fields=st.dictionaries(st.sampled_from(NAMES), VALUES),
    meta=st.dictionaries(st.sampled_from(NAMES), META),
    incoming=st.dictionaries(st.sampled_from(NAMES), VALUES),
    copied=st.sets(st.sampled_from(NAMES)),
)
def test_r13_a_record_the_row_already_holds_would_change_nothing_if_merged(
    fields, meta, incoming, copied
) -> None:
    # Part of the record repeats the row's values, so both answers come up often.
    values = incoming | {name: fields[name] for name in copied if name in fields}
    row = _row(fields, meta)
    record = _record(values)
    if row.already_holds(record):
        merged = merge_from_crm(row.values, record.values, modstamp=record.modstamp)
        assert merged.changed == ()
        assert merged.conflicts == ()
    elif set(values) <= set(fields) and all(fields[n] == v for n, v in values.items()):
        raise AssertionError("a record of the row's own values and stamp was not recognised")


def test_a_record_is_not_already_held_when_its_stamp_owner_or_a_value_differ() -> None:
    fields = {"first_name": "Ada", "job_title": "CTO"}
    record = _record({"first_name": "Ada"})
    assert _row(fields, {}).already_holds(record)
    assert not _row(fields, {}, crm_modstamp=STAMP - timedelta(seconds=1)).already_holds(record)
    assert not _row(fields, {}, owner_external_id="005B").already_holds(record)
    assert not _row(fields, {}).already_holds(_record({"first_name": "Grace"}))
    assert not _row(fields, {}).already_holds(_record({"phone": None}))


def test_r18_a_record_older_than_its_row_needs_no_write_whatever_its_values() -> None:
    row = _row({"first_name": "Ada"}, {})
    assert needs_no_write(row, _record({"first_name": "Grace"}, modstamp=STAMP - timedelta(seconds=1)))
    assert not needs_no_write(row, _record({"first_name": "Grace"}, modstamp=STAMP + timedelta(seconds=1)))
    assert needs_no_write(row, _record({"first_name": "Ada"}))


@given(
    fields=st.dictionaries(st.sampled_from(NAMES), VALUES),
    meta=st.dictionaries(st.sampled_from(NAMES), META),
    incoming=st.dictionaries(st.sampled_from(NAMES), VALUES),
)
def test_r13_a_merge_that_changes_nothing_at_the_row_s_own_stamp_is_a_skip(fields, meta, incoming) -> None:
    row = _row(fields, meta)
    record = _record(incoming)
    merged = merge_from_crm(row.values, record.values, modstamp=record.modstamp)
    assert merge_changes_nothing(row, record, merged) == (merged.changed == ())
    other_owner = _row(fields, meta, owner_external_id="005B")
    assert not merge_changes_nothing(other_owner, record, merged)
