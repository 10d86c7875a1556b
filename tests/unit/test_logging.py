"""Logs are JSON lines with ids, and no secret or credential ever reaches one."""

from __future__ import annotations

import logging

import orjson
import pytest
import structlog

from crmsync.common.observability.logging import configure_logging


@pytest.fixture
def lines(capsys: pytest.CaptureFixture[str]):
    configure_logging(service="test", json=True)

    def read() -> list[dict]:
        return [orjson.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]

    yield read
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def test_log_lines_are_json_with_the_service_and_bound_ids(lines) -> None:
    structlog.contextvars.bind_contextvars(account_id="acme", job_id="acme:full:1")
    structlog.get_logger().info("sync_started", event_id="e-1")
    (line,) = lines()
    assert line["event"] == "sync_started"
    assert (line["service"], line["account_id"], line["job_id"], line["event_id"]) == (
        "test",
        "acme",
        "acme:full:1",
        "e-1",
    )
    assert line["level"] == "info" and line["timestamp"]


@pytest.mark.parametrize(
    ("fields", "secret"),
    [
        ({"client_secret": "s3cr3t-value"}, "s3cr3t-value"),
        ({"access_token": "00Dxx!AQ4AQ.token"}, "00Dxx!AQ4AQ.token"),
        ({"password": "hunter2"}, "hunter2"),
        ({"authorization": "Bearer abc"}, "abc"),
    ],
)
def test_fields_named_like_credentials_are_redacted(lines, fields: dict, secret: str) -> None:
    structlog.get_logger().warning("something_happened", **fields)
    (line,) = lines()
    assert secret not in orjson.dumps(line).decode()
    assert line[next(iter(fields))] == "[redacted]"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("postgresql+asyncpg://crmsync:pa55word@db:5432/crmsync", "pa55word"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----", "MIIEv"),
    ],
)
def test_credentials_inside_values_are_masked_whoever_logs_them(lines, text: str, secret: str) -> None:
    structlog.get_logger().warning("something_happened", detail=text)
    logging.getLogger("third.party").warning("connecting to %s", text)
    output = lines()
    assert len(output) == 2
    for line in output:
        assert secret not in orjson.dumps(line).decode()
