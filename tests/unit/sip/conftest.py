"""Fixtures for the proxy/sip unit tests."""

from __future__ import annotations

import pytest

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def make_request(
    *, start: bytes = b"", drop: tuple[str, ...] = (), extra: bytes = b"", body: bytes | None = None
) -> bytes:
    """INVITE with its start line replaced, header lines dropped by prefix, extra lines added."""
    head, _, old_body = INVITE.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if start:
        lines[0] = start
    lines = [
        ln
        for ln in lines
        if not any(ln.lower().startswith(d.lower().encode() + b":") for d in drop)
    ]
    new_body = old_body if body is None else body
    lines = [ln for ln in lines if not ln.startswith(b"Content-Length")]
    lines.append(b"Content-Length: %d" % len(new_body))
    text = b"\r\n".join(lines) + b"\r\n"
    return text + extra + b"\r\n" + new_body


@pytest.fixture
def invite() -> bytes:
    """A well-formed INVITE with two Route values and a 4-octet body."""
    return INVITE
