"""`$batch`: a multipart/mixed body of up to 1,000 operations, change sets among them.

Operations run in order through the same dispatcher as single requests. A
change set is atomic: the first failing operation undoes the set's earlier
ones and is the set's only answer. Without `Prefer: odata.continue-on-error`
the batch stops at the first failure, as Dataverse does. `$n` in a URL is the
record created by the operation of Content-ID n.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl

from crmsync.dynamics_emulator.errors import BATCH_TOO_LARGE, DataverseError, invalid
from crmsync.dynamics_emulator.http import Call, Reply
from crmsync.dynamics_emulator.store import Environment

MAX_OPERATIONS = 1000
BOUNDARY = re.compile(r'boundary="?([^";,\s]+)"?', re.IGNORECASE)
SERVICE_PATH = re.compile(r"^(?:https?://[^/]+)?/?api/data/v9\.\d/", re.IGNORECASE)
Dispatch = Callable[[Environment, Call], Reply]


@dataclass(frozen=True)
class Operation:
    content_id: str | None
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class ChangeSet:
    operations: list[Operation]


class _Failed(Exception):
    def __init__(self, part: str) -> None:
        super().__init__("change set failed")
        self.part = part


def _boundary(content_type: str | None) -> str:
    match = BOUNDARY.search(content_type or "")
    if match is None:
        raise invalid("The batch request must have a multipart/mixed Content-Type with a boundary.")
    return match[1]


def _parts(text: str, boundary: str) -> list[tuple[dict[str, str], str]]:
    """The parts of a multipart body: (headers in lower case, the rest)."""
    parts, current, inside = [], [], False
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.strip() in (f"--{boundary}", f"--{boundary}--"):
            if inside and current:
                parts.append(_headed("\n".join(current)))
            current, inside = [], not line.strip().endswith("--")
        elif inside:
            current.append(line)
    return parts


def _headed(raw: str) -> tuple[dict[str, str], str]:
    head, _, rest = raw.lstrip("\n").partition("\n\n")
    headers = {}
    for line in head.split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _operation(headers: dict[str, str], text: str) -> Operation:
    request_line, _, rest = text.lstrip("\n").partition("\n")
    method, _, target = request_line.strip().partition(" ")
    inner, body = _headed(rest if "\n\n" in rest else rest + "\n\n")
    return Operation(
        headers.get("content-id"), method.upper(), target.rsplit(" ", 1)[0], inner, body.strip().encode()
    )


def parse(call: Call) -> list[Operation | ChangeSet]:
    items: list[Operation | ChangeSet] = []
    for headers, text in _parts(call.body.decode("utf-8", "replace"), _boundary(call.header("content-type"))):
        if "multipart/mixed" in headers.get("content-type", ""):
            inner = _parts(text, _boundary(headers["content-type"]))
            items.append(ChangeSet([_operation(h, t) for h, t in inner]))
        else:
            items.append(_operation(headers, text))
    return items


def _call(op: Operation, root: str, created: dict[str, str]) -> Call:
    url = op.url
    if url.startswith("$"):
        ref, _, tail = url[1:].partition("/")
        if ref not in created:
            raise invalid(f"Content-ID reference '${ref}' does not name an earlier operation.")
        url = created[ref] + (f"/{tail}" if tail else "")
    path, _, query = SERVICE_PATH.sub("", url).partition("?")
    return Call(
        op.method, path.lstrip("/"), dict(parse_qsl(query, keep_blank_values=True)), op.headers, op.body, root
    )


def _render(reply: Reply, content_id: str | None) -> str:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id is not None:
        head += f"Content-ID: {content_id}\r\n"
    lines = [f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}"]
    lines += [f"{name}: {value}" for name, value in reply.headers.items()]
    return head + "\r\n" + "\r\n".join(lines) + "\r\n\r\n" + reply.body.decode() + "\r\n"


def _run(env: Environment, dispatch: Dispatch, op: Operation, root: str, created: dict[str, str]) -> Reply:
    if op.url.rstrip("/").endswith("$batch"):
        return Reply.json(400, invalid("A batch cannot hold another batch.").body())
    try:
        reply = dispatch(env, _call(op, root, created))
    except DataverseError as error:
        reply = Reply.json(error.status, error.body())
    entity = reply.headers.get("OData-EntityId")
    if op.content_id is not None and entity:
        created[op.content_id] = entity.removeprefix(root + "/")
    return reply


def _change_set(
    env: Environment, dispatch: Dispatch, items: ChangeSet, root: str, created: dict[str, str]
) -> tuple[str, bool]:
    boundary = f"changesetresponse_{uuid.uuid4()}"
    parts = []
    try:
        with env.transaction():
            for op in items.operations:
                if op.method == "GET":
                    raise _Failed(
                        _render(
                            Reply.json(400, invalid("A change set cannot hold a GET.").body()), op.content_id
                        )
                    )
                reply = _run(env, dispatch, op, root, created)
                if reply.status >= 400:
                    raise _Failed(_render(reply, op.content_id))
                parts.append(f"--{boundary}\r\n" + _render(reply, op.content_id))
    except _Failed as failed:
        return failed.part, False
    body = "".join(parts) + f"--{boundary}--\r\n"
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{body}", True


def handle(env: Environment, call: Call, dispatch: Dispatch) -> Reply:
    if call.method != "POST":
        raise invalid("A batch is sent with POST.", status=405)
    items = parse(call)
    total = sum(len(i.operations) if isinstance(i, ChangeSet) else 1 for i in items)
    if total > MAX_OPERATIONS:
        raise DataverseError(
            400,
            BATCH_TOO_LARGE,
            f"The number of requests in the batch, {total}, exceeds the limit of {MAX_OPERATIONS}.",
        )
    keep_going = "odata.continue-on-error" in call.prefers()
    boundary = f"batchresponse_{uuid.uuid4()}"
    created: dict[str, str] = {}
    parts = []
    for item in items:
        if isinstance(item, ChangeSet):
            part, ok = _change_set(env, dispatch, item, call.root, created)
        else:
            reply = _run(env, dispatch, item, call.root, created)
            part, ok = _render(reply, item.content_id), reply.status < 400
        parts.append(f"--{boundary}\r\n{part}")
        if not ok and not keep_going:
            break
    body = "".join(parts) + f"--{boundary}--\r\n"
    headers = {"Content-Type": f"multipart/mixed; boundary={boundary}"}
    if keep_going:
        headers["Preference-Applied"] = "odata.continue-on-error"
    return Reply(200, body.encode(), headers)
