"""The pusher's CRM writer: one round of retries, the connector's; what is still transient waits (R22, R24)."""

from __future__ import annotations

from collections.abc import Sequence

from crmsync.common.crm.interface import (
    CrmBudgetExhausted,
    CrmRecord,
    CrmRejected,
    CrmTransientError,
    WriteError,
    WriteResult,
)
from crmsync.common.retry import is_transient_result
from crmsync.pusher.adapters.crm import CrmWriter

LOCKED = WriteError("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record")
INVALID = WriteError("INVALID_EMAIL_ADDRESS", "Email: invalid email address: x")


class ScriptedCrm:
    """Answers each call from a script: a list of per-record results, or an exception."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls: list[list[CrmRecord]] = []

    async def _answer(self, records: Sequence[CrmRecord]) -> list[WriteResult]:
        self.calls.append(list(records))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    async def update(self, object_name: str, records: Sequence[CrmRecord]) -> list[WriteResult]:
        return await self._answer(records)

    async def create(self, object_name: str, records: Sequence[CrmRecord]) -> list[WriteResult]:
        return await self._answer(records)


def _writer(attempts: int = 3) -> CrmWriter:
    return CrmWriter(max_attempts=attempts, backoff_s=0.001, backoff_max_s=0.002)


def _records(n: int) -> list[CrmRecord]:
    return [{"Id": f"00Q{i}", "Title": "x"} for i in range(n)]


async def test_r22_a_record_still_locked_after_the_connectors_round_is_not_sent_again_but_waits() -> None:
    crm = ScriptedCrm([WriteResult("00Q0", True), WriteResult(None, False, (LOCKED,))])
    ok, locked = await _writer().write(crm, operation="update", crm_object="Lead", records=_records(2))
    assert (ok.success, ok.attempts) == (True, 1)
    assert (locked.success, locked.retryable, locked.error_code) == (False, True, "UNABLE_TO_LOCK_ROW")
    assert len(crm.calls) == 1  # the connector has sent it again already: tries do not multiply


async def test_r22_an_error_the_connector_has_retried_is_not_retried_again() -> None:
    error = CrmTransientError("503", error_code="SERVER_UNAVAILABLE")
    error.retried = True
    crm = ScriptedCrm(error)
    (outcome,) = await _writer(3).write(crm, operation="update", crm_object="Lead", records=_records(1))
    assert (outcome.success, outcome.retryable, outcome.error_code) == (False, True, "SERVER_UNAVAILABLE")
    assert len(crm.calls) == 1


async def test_r22_a_refused_record_is_not_retried_and_keeps_the_crms_message() -> None:
    crm = ScriptedCrm([WriteResult(None, False, (INVALID,))])
    (outcome,) = await _writer().write(crm, operation="update", crm_object="Lead", records=_records(1))
    assert (outcome.success, outcome.error_code, outcome.attempts) == (False, "INVALID_EMAIL_ADDRESS", 1)
    assert outcome.error_message == INVALID.message
    assert not outcome.retryable
    assert len(crm.calls) == 1


async def test_r22_transient_failures_are_bounded_and_reported_as_retryable() -> None:
    crm = ScriptedCrm(*(CrmTransientError("503", error_code="SERVER_UNAVAILABLE") for _ in range(3)))
    (outcome,) = await _writer(3).write(crm, operation="update", crm_object="Lead", records=_records(1))
    assert (outcome.success, outcome.retryable, outcome.attempts) == (False, True, 3)
    assert len(crm.calls) == 3


async def test_r22_a_refused_request_fails_every_record_at_once() -> None:
    crm = ScriptedCrm(CrmRejected("bad request", error_code="INVALID_FIELD"))
    outcomes = await _writer().write(crm, operation="update", crm_object="Lead", records=_records(2))
    assert [(o.success, o.retryable, o.parked) for o in outcomes] == [(False, False, False)] * 2
    assert {o.error_code for o in outcomes} == {"INVALID_FIELD"}
    assert len(crm.calls) == 1


async def test_r24_an_exhausted_budget_parks_every_record_at_once_without_failing_them() -> None:
    crm = ScriptedCrm(CrmBudgetExhausted("budget", used=10, limit=10))
    outcomes = await _writer().write(crm, operation="update", crm_object="Lead", records=_records(2))
    assert [(o.success, o.parked, o.retryable) for o in outcomes] == [(False, True, False)] * 2
    assert {o.error_code for o in outcomes} == {"REQUEST_LIMIT_EXCEEDED"}
    assert len(crm.calls) == 1


async def test_r18_a_create_that_failed_as_a_whole_is_looked_up_before_it_is_sent_again() -> None:
    crm = ScriptedCrm(CrmTransientError("timeout"), [WriteResult("00Q9", True)])
    asked: list[list[int]] = []

    async def find_created(positions: Sequence[int]) -> dict[int, str]:
        asked.append(list(positions))
        return {0: "00Q7"}  # the first record had been created before the timeout

    records = [{"LastName": "A"}, {"LastName": "B"}]
    outcomes = await _writer().write(
        crm, operation="create", crm_object="Lead", records=records, find_created=find_created
    )
    assert asked == [[0, 1]]
    assert [(o.success, o.crm_id) for o in outcomes] == [(True, "00Q7"), (True, "00Q9")]
    assert crm.calls[1] == [{"LastName": "B"}]


def test_r22_only_a_refusal_for_passing_reasons_alone_is_a_transient_result() -> None:
    assert is_transient_result(WriteResult(None, False, (LOCKED,)))
    assert not is_transient_result(WriteResult(None, False, (LOCKED, INVALID)))
    assert not is_transient_result(WriteResult(None, False, ()))
    assert not is_transient_result(WriteResult("00Q1", True))
    assert not is_transient_result(None)
