"""build_response and build_reply_from_error (RFC 3261 §8.2.6, §20.43)."""

from __future__ import annotations

import pytest

from proxy.sip import (
    Request,
    Response,
    SipParseError,
    build_reply_from_error,
    build_response,
    check_request,
    parse_message,
)

from .conftest import INVITE, make_request


def _request(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def test_build_response_copies_headers_verbatim_in_order() -> None:
    """Via (all), From, To, Call-ID, CSeq are copied byte-for-byte; nothing else."""
    req = _request(make_request(extra=b"v: SIP/2.0/TCP second.example;branch=z9hG4bK2\r\n"))
    wire = build_response(req, 486).to_bytes()
    assert wire.startswith(b"SIP/2.0 486 Busy Here\r\n")
    assert b"\r\nv: SIP/2.0/TCP second.example;branch=z9hG4bK2\r\n" in wire
    assert b"Route" not in wire and b"Contact" not in wire and b"Max-Forwards" not in wire
    assert wire.endswith(b"Content-Length: 0\r\n\r\n")
    reply = parse_message(wire)
    assert isinstance(reply, Response)
    assert [v.host for v in reply.vias] == [v.host for v in req.vias]


def test_build_response_to_tag_rules() -> None:
    """to_tag is added when To has none, never to a 100, never twice."""
    req = _request(INVITE)
    assert build_response(req, 180, to_tag="t1").to.tag == "t1"
    assert build_response(req, 100, to_tag="t1").to.tag is None
    tagged = _request(
        INVITE.replace(b"To: Bob <sip:bob@biloxi.example.com>", b"To: <sip:b@x>;tag=orig")
    )
    assert build_response(tagged, 200, to_tag="t2").to.tag == "orig"


def test_build_response_reason_and_extra() -> None:
    """Custom reason phrases and extra headers appear in the response."""
    resp = build_response(
        _request(INVITE), 403, "Caller ID Rejected", extra=[("Reason", 'SIP;cause=403;text="x"')]
    )
    assert (resp.status, resp.reason) == (403, "Caller ID Rejected")
    assert resp.get("Reason") == 'SIP;cause=403;text="x"'


def test_build_response_100_copies_timestamp() -> None:
    """100 Trying copies Timestamp (RFC 3261 §8.2.6.1)."""
    req = _request(make_request(extra=b"Timestamp: 54\r\n"))
    assert build_response(req, 100).get("Timestamp") == "54"
    assert build_response(req, 200).get("Timestamp") is None


def test_reply_from_parse_error_has_warning_and_reason() -> None:
    """A stateless 400 names the problem in the reason phrase and a 399 Warning."""
    with pytest.raises(SipParseError) as info:
        parse_message(INVITE[:-2])
    wire = build_reply_from_error(info.value, agent="proxy.example.net")
    assert wire is not None
    reply = parse_message(wire)
    assert isinstance(reply, Response)
    assert (reply.status, reply.reason) == (400, "Content-Length larger than body")
    assert reply.get("Warning") == '399 proxy.example.net "Content-Length larger than body"'
    assert reply.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert reply.to.tag is not None and reply.to.tag.startswith("sg")
    assert reply.top_via.branch == "z9hG4bK776asdhds"


def test_reply_tag_is_stable_for_retransmissions() -> None:
    """The same request gives the same stateless reply, To tag included."""
    error = SipParseError(
        "x",
        reply_headers=[
            ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"),
            ("From", "<sip:a@b>;tag=1"),
            ("To", "<sip:c@d>"),
            ("Call-ID", "c"),
            ("CSeq", "1 INVITE"),
        ],
    )
    assert build_reply_from_error(error) == build_reply_from_error(error)


def test_reply_from_validation_error_uses_its_status() -> None:
    """A 505 from check_request becomes a 505 reply."""
    error = check_request(
        _request(make_request(start=b"INVITE sip:bob@biloxi.example.com SIP/3.0"))
    )
    assert error is not None
    wire = build_reply_from_error(error)
    assert wire is not None and wire.startswith(
        b"SIP/2.0 505 SIP version SIP/3.0 not supported\r\n"
    )


def test_no_reply_without_reply_headers() -> None:
    """Errors without reply headers (responses, unreadable requests) give None."""
    assert build_reply_from_error(SipParseError("broken")) is None


def test_reply_sanitises_reason_text() -> None:
    """CR/LF and quotes in the reason cannot break the reply."""
    error = SipParseError(
        'bad "x"\r\nInjected: 1',
        reply_headers=[
            ("Via", "SIP/2.0/UDP h"),
            ("From", "<sip:a@b>;tag=1"),
            ("To", "<sip:c@d>;tag=2"),
            ("Call-ID", "c"),
            ("CSeq", "1 INVITE"),
        ],
    )
    wire = build_reply_from_error(error)
    assert wire is not None
    assert b"\r\nInjected" not in wire
    reply = parse_message(wire)
    assert reply.get("Warning") == '399 sipguard "bad \\"x\\" Injected: 1"'
    assert reply.to.tag == "2"
