"""The console's session cookie and CSRF token: sealed, tamper-evident, expiring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crmsync.mapping_api.console.session import SessionCodec

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_a_sealed_session_opens_to_the_same_key_and_token_and_hides_the_key() -> None:
    codec = SessionCodec("secret")
    session = codec.new("crmsync_abc", now=NOW)
    value = codec.seal(session)
    assert "crmsync_abc" not in value
    assert codec.open(value, now=NOW + timedelta(minutes=5)) == session


def test_each_session_has_its_own_csrf_token_checked_exactly() -> None:
    codec = SessionCodec("secret")
    one, two = codec.new("k", now=NOW), codec.new("k", now=NOW)
    assert one.csrf_token != two.csrf_token and len(one.csrf_token) >= 32
    assert one.csrf_ok(one.csrf_token)
    assert not one.csrf_ok(two.csrf_token)
    assert not one.csrf_ok("")
    assert not one.csrf_ok(None)


def test_a_session_expires() -> None:
    codec = SessionCodec("secret", ttl=timedelta(hours=1))
    value = codec.seal(codec.new("k", now=NOW))
    assert codec.open(value, now=NOW + timedelta(minutes=59)) is not None
    assert codec.open(value, now=NOW + timedelta(hours=1)) is None


def test_a_tampered_missing_or_foreign_cookie_opens_as_none() -> None:
    codec = SessionCodec("secret")
    value = codec.seal(codec.new("k", now=NOW))
    assert codec.open(value[:-4] + "AAAA", now=NOW) is None
    assert codec.open("not a cookie", now=NOW) is None
    assert codec.open("", now=NOW) is None
    assert codec.open(None, now=NOW) is None
    assert SessionCodec("another secret").open(value, now=NOW) is None


def test_a_session_cookie_is_not_a_crm_secret_of_the_same_key() -> None:
    from crmsync.common.crypto import SecretBox

    value = SessionCodec("secret").seal(SessionCodec("secret").new("k", now=NOW))
    try:
        SecretBox("secret").open(value.encode())
    except ValueError:
        return
    raise AssertionError("a session cookie opened as a stored CRM secret")
