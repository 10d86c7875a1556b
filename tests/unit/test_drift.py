"""R25: which local values the CRM should hold and does not, and the repairs that hand them to
the pusher (pure); and the repair pass that ends a sync run, over in-memory ports."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmsync.common.domain.contacts import CRM_ORIGIN, ContactValues, FieldMeta
from crmsync.common.domain.drift import (
    CrmVersion,
    StoredForRepair,
    candidates,
    find_drift,
    repair_event_id,
    repair_plan,
)
from crmsync.common.domain.mapping import PushPolicy, default_salesforce_mapping, effective_allow_push
from crmsync.common.messages import EventSource, SyncKind
from crmsync.puller.domain.runs import EntityState
from crmsync.puller.handlers.run_sync import SyncRunner
from crmsync.puller.settings import Settings
from tests.unit.puller_fakes import NOW, FakeCrm, FakeStore, claimed, lead

MAPPING = default_salesforce_mapping()
ORIGINS = frozenset(s.value for s in EventSource)
PULLED = datetime(2026, 11, 28, 9, tzinfo=UTC)
LATER = PULLED + timedelta(minutes=30)


def stored(
    meta: dict[str, FieldMeta], fields: dict, *, crm_modstamp: datetime | None = PULLED
) -> StoredForRepair:
    return StoredForRepair(
        id=uuid.UUID(int=7),
        crm_object="Lead",
        external_id="00Q001",
        email="ada@example.com",
        values=ContactValues(fields, meta),
        crm_modstamp=crm_modstamp,
    )


def local_title(origin: str = "user_edit", at: datetime = LATER) -> StoredForRepair:
    return stored({"job_title": FieldMeta(origin, at)}, {"job_title": "CTO", "city": "Oslo"})


@pytest.mark.parametrize(
    ("contact", "policy", "expected"),
    [
        (local_title(), PushPolicy(), ("job_title",)),
        (local_title(at=PULLED), PushPolicy(), ()),  # not newer than the CRM version pulled
        (local_title(origin=CRM_ORIGIN), PushPolicy(), ()),  # the CRM's own: never pushed back (R12)
        (local_title(origin="pusher-internal"), PushPolicy(), ()),  # no event can carry that origin
        (local_title(), PushPolicy(default_allow_push=False), ()),  # Allow Push off (R8)
        (stored({"webinar": FieldMeta("form", LATER)}, {"webinar": "yes"}), PushPolicy(), ()),  # not mapped
        (stored({"company": FieldMeta("form", LATER)}, {"company": "X"}), PushPolicy(), ("company",)),
        (stored({"score": FieldMeta("scoring", LATER)}, {"score": 9}), PushPolicy(False), ("score",)),  # R8
    ],
)
def test_r25_candidates_are_local_push_allowed_values_newer_than_the_crm_version_pulled(
    contact: StoredForRepair, policy: PushPolicy, expected: tuple[str, ...]
) -> None:
    assert candidates(contact, mapping=MAPPING, policy=policy, origins=ORIGINS) == expected


def test_r25_a_contact_s_company_has_no_source_on_a_crm_contact() -> None:
    contact = stored({"company": FieldMeta("form", LATER)}, {"company": "X"})
    on_contact = StoredForRepair(**{**vars(contact), "crm_object": "Contact"})
    assert candidates(on_contact, mapping=MAPPING, policy=PushPolicy(), origins=ORIGINS) == ()


@pytest.mark.parametrize(
    ("crm", "drifts"),
    [
        (CrmVersion({"job_title": "Engineer"}, PULLED), True),  # the CRM lacks it
        (CrmVersion({"job_title": "CTO"}, PULLED), False),  # the CRM holds it already
        (
            CrmVersion({"job_title": "Engineer"}, LATER + timedelta(seconds=1)),
            False,
        ),  # the CRM is newer (R13)
        (CrmVersion({"job_title": "Engineer"}, LATER), False),  # a tie: the CRM wins (R13)
        (None, False),  # deleted in the CRM (R16)
    ],
)
def test_r25_a_candidate_drifts_when_the_crm_record_read_again_is_older_and_holds_another_value(
    crm: CrmVersion | None, drifts: bool
) -> None:
    contact = local_title()
    found = find_drift(contact, ("job_title",), crm, mapping=MAPPING)
    assert bool(found) is drifts
    if drifts:
        (drift,) = found
        assert (drift.local_value, drift.crm_value, drift.origin, drift.scheduled) == (
            "CTO",
            "Engineer",
            "user_edit",
            False,
        )


def test_r25_values_repaired_go_as_one_event_per_origin_and_time_and_scores_go_outbound() -> None:
    contact = stored(
        {
            "job_title": FieldMeta("user_edit", LATER),
            "city": FieldMeta("user_edit", LATER),
            "state": FieldMeta("form", LATER + timedelta(minutes=1)),
            "score": FieldMeta("scoring", LATER),
        },
        {"job_title": "CTO", "city": "Oslo", "state": "Viken", "score": 40},
    )
    fields = candidates(contact, mapping=MAPPING, policy=PushPolicy(), origins=ORIGINS)
    crm = CrmVersion({"job_title": "Eng", "city": "Bergen", "state": None, "score": 10}, PULLED)
    plan = repair_plan("acme", contact, find_drift(contact, fields, crm, mapping=MAPPING))
    assert plan.found == 4
    assert plan.outbound == (contact.id,)
    assert [(e.origin, e.occurred_at, dict(e.changes)) for e in plan.events] == [
        ("user_edit", LATER, {"city": "Oslo", "job_title": "CTO"}),
        ("form", LATER + timedelta(minutes=1), {"state": "Viken"}),
    ]
    assert plan.events[0].crm_values == {"city": ("Bergen", PULLED), "job_title": ("Eng", PULLED)}
    again = repair_plan("acme", contact, find_drift(contact, fields, crm, mapping=MAPPING))
    assert [e.event_id for e in again.events] == [e.event_id for e in plan.events]  # R18


values = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(["a", "b", "CTO"]))
times = st.integers(-3, 3).map(lambda m: PULLED + timedelta(minutes=m))
names = st.sampled_from(["job_title", "city", "score", "opted_out", "webinar", "sales_owner_name", "email"])
origins = st.sampled_from(["crm", "form", "user_edit", "scoring", "other"])


@given(
    entries=st.dictionaries(names, st.tuples(values, origins, times), max_size=6),
    crm_values=st.dictionaries(names, values, max_size=6),
    crm_at=times,
    default_allow=st.booleans(),
)
def test_r12_r25_a_repair_never_echoes_and_only_sends_what_the_crm_lacks(
    entries, crm_values, crm_at, default_allow
) -> None:
    contact = stored(
        {n: FieldMeta(o, at) for n, (_, o, at) in entries.items()}, {n: v for n, (v, _, _) in entries.items()}
    )
    policy = PushPolicy(default_allow_push=default_allow)
    fields = candidates(contact, mapping=MAPPING, policy=policy, origins=ORIGINS)
    drifted = find_drift(contact, fields, CrmVersion(crm_values, crm_at), mapping=MAPPING)
    plan = repair_plan("acme", contact, drifted)
    assert plan.found == len(drifted)
    for drift in drifted:
        meta = contact.values.meta[drift.field]
        row = MAPPING.row(drift.field)
        assert not meta.from_crm and meta.origin in ORIGINS  # never an echo (R12)
        assert row is not None and effective_allow_push(row, policy)  # R8
        assert meta.at > PULLED and meta.at > crm_at  # newer than what the CRM has (R13)
        assert crm_values[drift.field] != contact.values.fields[drift.field]  # the CRM lacks it
    sent = {name for e in plan.events for name in e.changes}
    assert sent == {d.field for d in drifted if not d.scheduled}
    assert len({e.event_id for e in plan.events}) == len(plan.events)


def test_repair_event_ids_are_deterministic_and_tell_repairs_apart() -> None:
    contact = uuid.UUID(int=1)
    first = repair_event_id("acme", contact, "form", LATER, ["city", "job_title"])
    assert first == repair_event_id("acme", contact, "form", LATER, ["job_title", "city"])
    assert first != repair_event_id("acme", contact, "form", LATER, ["city"])
    assert first != repair_event_id(
        "acme", contact, "form", LATER + timedelta(seconds=1), ["city", "job_title"]
    )
    assert len(first) <= 200


# ------------------------------------------------------------------ the pass in a run


def _runner(store: FakeStore, crm: FakeCrm, **settings: float) -> SyncRunner:
    config = Settings(puller_batch_size=2, puller_lookback_s=60.0, **settings)
    return SyncRunner(store=store, crm_factory=lambda _: crm, settings=config, clock=lambda: NOW)


def _drifting(store: FakeStore) -> None:
    record = lead(1, modstamp=PULLED)
    store.db.repair_candidates = [
        StoredForRepair(
            id=uuid.UUID(int=9),
            crm_object="Lead",
            external_id=record["Id"],
            email=record["Email"],
            values=ContactValues({"job_title": "CTO"}, {"job_title": FieldMeta("user_edit", LATER)}),
            crm_modstamp=PULLED,
        )
    ]


async def test_r25_a_full_sync_ends_with_a_repair_pass_that_records_what_it_found() -> None:
    store = FakeStore()
    _drifting(store)
    crm = FakeCrm({"Lead": [lead(1, modstamp=PULLED)], "Contact": []})
    run = claimed(SyncKind.FULL)
    assert await _runner(store, crm).execute(run) == "succeeded"
    (plan,) = store.db.repaired
    assert [dict(e.changes) for e in plan.events] == [{"job_title": "CTO"}]
    assert store.db.drift_found == {run.id: 1}


@pytest.mark.parametrize(
    ("last_repair", "interval_s", "passes"),
    [
        (None, 3600.0, True),
        (NOW - timedelta(hours=2), 3600.0, True),
        (NOW - timedelta(minutes=5), 3600.0, False),
        (None, 0.0, False),
    ],
)
async def test_r25_an_incremental_sync_repairs_on_the_repair_schedule(
    last_repair: datetime | None, interval_s: float, passes: bool
) -> None:
    store = FakeStore()
    store.db.entities = {
        e: EntityState(watermark=PULLED, deleted_watermark=PULLED) for e in ("Lead", "Contact")
    }
    store.db.last_repair_at = last_repair
    _drifting(store)
    crm = FakeCrm({"Lead": [lead(1, modstamp=PULLED)], "Contact": []})
    run = claimed(SyncKind.INCREMENTAL)
    assert await _runner(store, crm, puller_repair_interval_s=interval_s).execute(run) == "succeeded"
    assert (run.id in store.db.drift_found) is passes
