"""TLS failures of a CRM's endpoints, as the interface's errors (every connector's)."""

from __future__ import annotations

import ssl

import httpx

from crmsync.common.crm.interface import CrmTransientError


def untrusted_certificate(exc: httpx.TransportError, *, operation: str, url: str) -> CrmTransientError | None:
    """Returns the error a TLS certificate this process does not trust stands for, or None
    when `exc` is another transport failure.

    Trying again in a moment would meet the same certificate, so it comes out without the
    connector's retries (`retried`); it stays transient for the caller, since a later try
    goes through once the operator trusts the certificate's CA.
    """
    cause: BaseException | None = exc
    for _ in range(8):  # httpx wraps httpcore's error, which wraps ssl's
        if cause is None or isinstance(cause, ssl.SSLCertVerificationError):
            break
        cause = cause.__cause__ or cause.__context__
    if not isinstance(cause, ssl.SSLCertVerificationError):
        return None
    reason = cause.verify_message or str(cause)
    error = CrmTransientError(
        f"{operation}: the TLS certificate of {httpx.URL(url).netloc.decode()} is not trusted ({reason}); "
        "add its CA to the bundle SSL_CERT_FILE names",
        error_code="CERTIFICATE_UNTRUSTED",
    )
    error.retried = True
    return error
