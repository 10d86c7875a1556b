"""The `crmsync-emulator` command line."""

from __future__ import annotations

import pytest

from crmsync.emulator.__main__ import parse_args


def test_flags_and_defaults():
    args = parse_args(
        ["--host", "0.0.0.0", "--port", "9000", "--leads", "10", "--contacts", "20", "--seed", "3",
         "--client-id", "id", "--client-secret", "secret", "--api-limit", "50", "--token-ttl", "60"]
    )  # fmt: skip
    assert (args.host, args.port, args.leads, args.contacts, args.seed) == ("0.0.0.0", 9000, 10, 20, 3)
    assert (args.client_id, args.client_secret, args.api_limit, args.token_ttl) == ("id", "secret", 50, 60)
    defaults = parse_args([])
    assert (defaults.port, defaults.leads, defaults.contacts, defaults.api_limit) == (
        8085,
        2000,
        2000,
        100_000,
    )


def test_help_documents_every_flag(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in (
        "--host",
        "--port",
        "--leads",
        "--contacts",
        "--seed",
        "--client-id",
        "--client-secret",
        "--api-limit",
        "--token-ttl",
    ):
        assert flag in text


def test_tls_flags():
    args = parse_args(["--tls", "--tls-cert-out", "/tmp/c.pem", "--plain-port", "9001"])
    assert (args.tls, str(args.tls_cert_out), args.plain_port) == (True, "/tmp/c.pem", 9001)
    given = parse_args(["--certfile", "c.pem", "--keyfile", "k.pem"])
    assert (str(given.certfile), str(given.keyfile), given.tls) == ("c.pem", "k.pem", False)
    assert parse_args([]).tls is False


@pytest.mark.parametrize(
    "argv",
    [
        ["--certfile", "c.pem"],
        ["--keyfile", "k.pem"],
        ["--tls", "--certfile", "c.pem", "--keyfile", "k.pem"],
        ["--tls-cert-out", "c.pem"],
        ["--plain-port", "9001"],
    ],
)
def test_tls_flags_that_do_not_go_together_are_refused(argv: list[str]):
    with pytest.raises(SystemExit):
        parse_args(argv)
