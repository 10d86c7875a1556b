"""A self-signed certificate for serving HTTPS on the loopback (127.0.0.1 and localhost)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DNS_NAMES = ("localhost",)
IP_ADDRESSES = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class CertPair:
    certfile: Path
    keyfile: Path
    generated: bool  # the key is then a temporary file, removed by `remove_key`

    def remove_key(self) -> None:
        if self.generated:
            self.keyfile.unlink(missing_ok=True)


def self_signed(*, days: int = 30) -> tuple[bytes, bytes]:
    """Returns (certificate PEM, private key PEM) of a certificate that is its own trust anchor.

    It is marked a CA (critical basic constraints, keyCertSign) with key identifiers, so
    strict X.509 verification accepts it as the one certificate a client trusts.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "crmsync emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, "crmsync-emulator localhost"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    alt_names = [x509.DNSName(n) for n in DNS_NAMES]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in IP_ADDRESSES]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def generate_pair(cert_out: Path | None) -> CertPair:
    """Writes a new self-signed certificate (to `cert_out`, or a temporary file) and its key (private, 0600)."""
    cert_pem, key_pem = self_signed()
    if cert_out is None:
        fd, name = tempfile.mkstemp(prefix="crmsync-emulator-", suffix=".pem")
        os.close(fd)
        cert_out = Path(name)
    cert_out.write_bytes(cert_pem)
    fd, key_name = tempfile.mkstemp(prefix="crmsync-emulator-", suffix=".key")
    with os.fdopen(fd, "wb") as key_file:
        key_file.write(key_pem)
    return CertPair(cert_out, Path(key_name), generated=True)
