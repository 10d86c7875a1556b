"""The Dynamics 365 connector's writes against a fake `$batch` over httpx.MockTransport: one change set
per record, continue-on-error, results in order, creates only through `create` (R9), updates that never
create, records refused for a passing reason sent again, and the default mapping of a new account (R7)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx
import orjson
import pytest

from crmsync.common.crm.dynamics import (
    DynamicsConnector,
    DynamicsCredentials,
    DynamicsOptions,
    default_dynamics_mapping,
)
from crmsync.common.crm.dynamics._batch import Operation, decode, encode
from crmsync.common.crm.interface import CrmTransientError
from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import CrmObject

ORG = "https://org.example.test"
WEB_API = f"{ORG}/api/data/v9.2"
CREDENTIALS = DynamicsCredentials("https://login.example.test", "t", "app", "secret", ORG)
LEAD = "00000000-0000-0000-0000-000000000001"
REQUEST_LINE = re.compile(r"^(POST|PATCH|GET|DELETE) (\S+) HTTP/1\.1\r?$", re.MULTILINE)

ATTRIBUTES = [
    {"LogicalName": "lastname", "AttributeType": "String", "IsValidForUpdate": True, "MaxLength": 50},
    {"LogicalName": "birthdate", "AttributeType": "DateTime", "Format": "DateOnly", "IsValidForUpdate": True},
    {
        "LogicalName": "interests",
        "AttributeType": "Virtual",
        "AttributeTypeName": {"Value": "MultiSelectPicklistType"},
    },
]
Answer = Callable[[int, str, str, dict[str, Any] | None], tuple[int, dict[str, str], dict[str, Any] | None]]


def created(
    index: int, method: str, url: str, body: dict[str, Any] | None
) -> tuple[int, dict[str, str], None]:
    guid = str(uuid.UUID(int=index + 100))
    return 204, {"OData-EntityId": f"{WEB_API}/leads({guid})"}, None


def refused(code: str, message: str, status: int = 400) -> Answer:
    return lambda i, m, u, b: (
        status,
        {"Content-Type": "application/json"},
        {"error": {"code": code, "message": message}},
    )


def _http(status: int, headers: dict[str, str], body: dict[str, Any] | None) -> str:
    phrase = httpx.codes.get_reason_phrase(status)
    lines = [f"HTTP/1.1 {status} {phrase}", "OData-Version: 4.0", *(f"{k}: {v}" for k, v in headers.items())]
    text = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n" + "\r\n".join(lines)
    return text + "\r\n\r\n" + (orjson.dumps(body).decode() if body is not None else "") + "\r\n"


class FakeBatch:
    """Answers each operation of a `$batch` with the next scripted answer (then `created`), as Dataverse
    does: a change set that succeeded as a nested multipart, a refused one by its failed operation alone."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.batches: list[list[tuple[str, str, dict[str, Any] | None, str]]] = []
        self.prefer: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 3600})
        if "EntityDefinitions" in request.url.path:
            return httpx.Response(200, json={"value": ATTRIBUTES})
        assert request.url.path == "/api/data/v9.2/$batch"
        self.prefer.append(request.headers.get("Prefer", ""))
        text = request.content.decode()
        operations = []
        for chunk in text.split("Content-Type: application/http")[1:]:
            method, url = REQUEST_LINE.search(chunk).groups()  # type: ignore[union-attr]
            body_text = (
                chunk.split("type=entry", 1)[1].strip().split("\r\n")[0] if "type=entry" in chunk else ""
            )
            if_match = "If-Match: *" if "If-Match: *" in chunk else ""
            operations.append((method, url, orjson.loads(body_text) if body_text else None, if_match))
        self.batches.append(operations)
        parts = []
        for index, (method, url, body, _) in enumerate(operations):
            answer = self.script.pop(0) if self.script else created
            status, headers, payload = answer(index, method, url, body)
            if status < 300:
                inner = f"changesetresponse_{index}"
                parts.append(f"Content-Type: multipart/mixed; boundary={inner}\r\n\r\n--{inner}\r\n"
                             + _http(status, headers, payload) + f"--{inner}--\r\n")  # fmt: skip
            else:
                parts.append(_http(status, headers, payload))
        body = "".join(f"--batchresponse_1\r\n{p}" for p in parts) + "--batchresponse_1--\r\n"
        return httpx.Response(200, content=body.encode(),
                              headers={"Content-Type": "multipart/mixed; boundary=batchresponse_1"})  # fmt: skip


def connector(fake: FakeBatch, **options: Any) -> DynamicsConnector:
    opts = DynamicsOptions(max_retries=2, backoff_initial_s=0, backoff_max_s=0.01, **options)
    return DynamicsConnector(CREDENTIALS, options=opts, transport=httpx.MockTransport(fake))


async def test_creates_go_in_one_batch_one_change_set_each_and_come_back_with_their_ids() -> None:
    fake = FakeBatch()
    async with connector(fake) as dynamics:
        results = await dynamics.create(
            "Lead",
            [{"lastname": "Lovelace", "Email": "ada@example.com", "OptedOut": True}, {"lastname": "Hopper"}],
        )
    assert [r.success for r in results] == [True, True]
    assert [r.id for r in results] == [str(uuid.UUID(int=100)), str(uuid.UUID(int=101))]
    [operations] = fake.batches
    assert [(m, u) for m, u, _, _ in operations] == [("POST", f"{WEB_API}/leads")] * 2
    assert operations[0][2] == {
        "lastname": "Lovelace", "emailaddress1": "ada@example.com", "donotbulkemail": True, "donotemail": True,
    }  # fmt: skip
    assert fake.prefer == ["odata.continue-on-error"]


async def test_updates_patch_each_record_and_never_create_one() -> None:
    fake = FakeBatch()
    fake.script = [refused("0x80040217", f"Entity 'lead' With Id = {LEAD} Does Not Exist", status=404)]
    async with connector(fake) as dynamics:
        [result] = await dynamics.update("Lead", [{"Id": LEAD, "firstname": "Ada", "OwnerId": LEAD}])
    [(method, url, body, if_match)] = fake.batches[0]
    assert (method, url, if_match) == ("PATCH", f"{WEB_API}/leads({LEAD})", "If-Match: *")
    assert body == {"firstname": "Ada", "ownerid@odata.bind": f"/systemusers({LEAD})"}
    assert not result.success and result.id == LEAD
    assert result.errors[0].status_code == "0x80040217"
    assert len(fake.batches) == 1  # a refusal for good is not sent again


async def test_one_refused_record_leaves_the_others_written_in_order() -> None:
    fake = FakeBatch()
    fake.script = [created, refused("0x80044331", "A validation error occurred. The length of the 'firstname' "
                                    "attribute of the 'lead' entity exceeded the maximum allowed length of '50'."), created]  # fmt: skip
    async with connector(fake) as dynamics:
        results = await dynamics.create(
            "Lead", [{"lastname": "a"}, {"firstname": "x" * 60}, {"lastname": "c"}]
        )
    assert [r.success for r in results] == [True, False, True]
    assert results[1].errors[0].fields == ("firstname",)


async def test_records_throttled_inside_a_batch_are_sent_again_alone() -> None:
    fake = FakeBatch()
    fake.script = [created, refused("0x80072322", "Number of requests exceeded the limit", status=429)]
    async with connector(fake) as dynamics:
        results = await dynamics.update(
            "Lead", [{"Id": LEAD, "firstname": "a"}, {"Id": LEAD, "firstname": "b"}]
        )
    assert [r.success for r in results] == [True, True]
    assert [len(b) for b in fake.batches] == [2, 1]
    assert fake.batches[1][0][2] == {"firstname": "b"}


async def test_a_create_answered_with_a_server_fault_is_not_sent_again() -> None:
    fake = FakeBatch()
    fake.script = [refused("0x80040216", "An unexpected error occurred.", status=500)]
    async with connector(fake) as dynamics:
        [result] = await dynamics.create("Lead", [{"lastname": "a"}])
    assert not result.success and len(fake.batches) == 1


async def test_a_batch_holds_at_most_batch_size_operations() -> None:
    fake = FakeBatch()
    async with connector(fake, batch_size=2) as dynamics:
        results = await dynamics.create("Contact", [{"lastname": str(i)} for i in range(5)])
    assert len(results) == 5 and [len(b) for b in fake.batches] == [2, 2, 1]
    assert all(u == f"{WEB_API}/contacts" for b in fake.batches for _, u, _, _ in b)


async def test_values_are_written_as_dataverse_takes_them() -> None:
    fake = FakeBatch()
    async with connector(fake) as dynamics:
        await dynamics.update("Contact", [{"Id": LEAD, "birthdate": date(1990, 5, 17), "interests": "1;3"}])
    assert fake.batches[0][0][2] == {"birthdate": "1990-05-17", "interests": "1,3"}


async def test_an_update_without_an_id_is_a_bug_of_the_caller() -> None:
    async with connector(FakeBatch()) as dynamics:
        with pytest.raises(ValueError, match="no Id"):
            await dynamics.update("Lead", [{"firstname": "a"}])


async def test_a_batch_whose_creates_may_have_been_applied_is_not_repeated() -> None:
    calls = []

    def timeout(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("$batch"):
            return FakeBatch()(request)
        calls.append(request)
        raise httpx.ReadTimeout("slow", request=request)

    options = DynamicsOptions(max_retries=3, backoff_initial_s=0)
    async with DynamicsConnector(
        CREDENTIALS, options=options, transport=httpx.MockTransport(timeout)
    ) as dynamics:
        with pytest.raises(CrmTransientError, match="may have been applied"):
            await dynamics.create("Lead", [{"lastname": "a"}])
    assert len(calls) == 1


def test_the_batch_encoding_round_trips_through_the_decoder() -> None:
    content_type, body = encode([Operation("POST", f"{WEB_API}/leads", {"lastname": "a"})])
    assert content_type.startswith("multipart/mixed; boundary=batch_")
    text = body.decode()
    assert "\r\nContent-ID: 1\r\n" in text and f"POST {WEB_API}/leads HTTP/1.1" in text
    answer = _http(204, {"OData-EntityId": f"{WEB_API}/leads({LEAD})"}, None)
    [decoded] = decode("multipart/mixed; boundary=b", f"--b\r\n{answer}--b--\r\n".encode())
    assert decoded.status == 204 and decoded.headers["odata-entityid"].endswith(f"({LEAD})")


def test_the_default_mapping_of_a_new_dynamics_account_uses_dataverse_columns_and_role_fields() -> None:
    mapping = default_dynamics_mapping()
    email = mapping.row("email")
    assert email is not None and (email.lead_source, email.contact_source) == ("Email", "Email")  # R2
    opted_out = mapping.row("opted_out")
    assert opted_out is not None and opted_out.source_for(CrmObject.CONTACT) == "OptedOut"
    assert any(r.data_type == DataType.SCORE and r.lead_source for r in mapping.rows)  # R3
    company = mapping.row("company")
    assert company is not None and company.contact_source is None  # a contact's company is its account's (R5)


class CountingGate:
    """Records what each request takes from the account's allowance."""

    def __init__(self) -> None:
        self.spent: list[int] = []

    async def spend(self, calls: int = 1) -> None:
        self.spent.append(calls)


async def test_r26_a_batch_takes_one_call_of_the_allowance_per_operation() -> None:
    fake, gate = FakeBatch(), CountingGate()
    async with connector(fake, call_gate=gate) as dynamics:
        await dynamics.create("Lead", [{"lastname": f"L{i}"} for i in range(5)])
    # The describe read takes one call, the $batch of five creates five (Dataverse counts each operation).
    assert len(fake.batches) == 1
    assert gate.spent[-1] == 5
    assert sum(gate.spent) == len(gate.spent) - 1 + 5
