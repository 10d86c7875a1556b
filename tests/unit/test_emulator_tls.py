"""The emulator's self-signed certificate: valid for the loopback names, its own trust anchor."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from cryptography import x509

from crmsync.emulator.tls import generate_pair, self_signed


def test_tls_certificate_names_127_0_0_1_and_localhost():
    cert_pem, _ = self_signed()
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert cert.issuer == cert.subject


def test_tls_certificate_is_a_trust_anchor_that_strict_verification_loads(tmp_path: Path):
    cert_pem, key_pem = self_signed()
    cert = x509.load_pem_x509_certificate(cert_pem)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(key_pem)
    client = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    assert client.get_ca_certs()[0]["subject"]


def test_tls_generated_pair_writes_the_certificate_where_asked_and_removes_its_key(tmp_path: Path):
    pair = generate_pair(tmp_path / "out.pem")
    assert pair.certfile == tmp_path / "out.pem"
    assert pair.certfile.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert pair.keyfile.stat().st_mode & 0o077 == 0  # private to its owner
    pair.remove_key()
    assert not pair.keyfile.exists()
    assert pair.certfile.exists()
