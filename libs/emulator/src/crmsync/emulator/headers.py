"""Response header names spelled as Salesforce spells them, on every path.

ASGI carries header names in lower case and the HTTP server writes them as it
gets them; clients that read headers case-sensitively (a plain dict of names)
must find `Sforce-Limit-Info`, `Sforce-Locator`, `Content-Type`, as Salesforce sends.
"""

from __future__ import annotations

from email.utils import formatdate

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SPELLINGS = {
    name.lower().encode(): name.encode()
    for name in (
        "Content-Type",
        "Content-Length",
        "Content-Encoding",
        "Date",
        "Location",
        "Retry-After",
        "Allow",
        "WWW-Authenticate",
        "Cache-Control",
        "Sforce-Limit-Info",
        "Sforce-Locator",
        "Sforce-NumberOfRecords",
        "Sforce-Query-Options",
    )
}


def spelled(name: bytes) -> bytes:
    """Returns Salesforce's spelling of a header name (Title-Case for names it has no special form of)."""
    known = SPELLINGS.get(name.lower())
    if known is not None:
        return known
    return b"-".join(part[:1].upper() + part[1:] for part in name.split(b"-"))


class SalesforceHeaders:
    """Re-spells every response header name, and adds the Date header Salesforce sends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def respelled(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(spelled(name), value) for name, value in message.get("headers", [])]
                if not any(name == b"Date" for name, _ in headers):
                    headers.append((b"Date", formatdate(usegmt=True).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, respelled)
