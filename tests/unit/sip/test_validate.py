"""check_request: semantic checks before the proxy processes a request."""

from __future__ import annotations

import pytest

from proxy.sip import Request, check_request, parse_message
from proxy.sip.errors import (
    BadContentLength,
    BadHeader,
    BadUri,
    MissingHeader,
    VersionNotSupported,
)

from .conftest import INVITE, make_request


def _check(data: bytes) -> object:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return check_request(msg)


def test_valid_request_passes() -> None:
    """A well-formed INVITE has no problem."""
    assert _check(INVITE) is None


def test_max_forwards_is_optional() -> None:
    """No Max-Forwards is accepted (RFC 2543 peers, RFC 4475 inv2543)."""
    assert _check(make_request(drop=("Max-Forwards",))) is None


@pytest.mark.parametrize("name", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_mandatory_header(name: str) -> None:
    """Each mandatory header's absence is reported by name."""
    error = _check(make_request(drop=(name,)))
    assert isinstance(error, MissingHeader) and error.reason == f"Missing {name}"
    assert error.method == "INVITE"
    assert error.reply_headers is None  # one of the five is missing: no stateless reply


@pytest.mark.parametrize(
    "line",
    [
        b"To: <sip:other@example.net>",
        b"f: <sip:x@y>;tag=2",
        b"i: other-call-id",
        b"CSeq: 1 INVITE",
        b"Max-Forwards: 5",
    ],
)
def test_conflicting_single_instance_headers(line: bytes) -> None:
    """A second To/From/Call-ID/CSeq/Max-Forwards with another value is a 400."""
    error = _check(make_request(extra=line + b"\r\n"))
    assert isinstance(error, BadHeader) and error.reason.startswith("Conflicting")
    assert error.status == 400 and error.reply_headers is not None


def test_identical_duplicate_is_tolerated() -> None:
    """The same Call-ID twice (different spacing) does not conflict."""
    assert (
        _check(make_request(extra=b"Call-ID:   a84b4c76e66710@pc33.atlanta.example.com\r\n"))
        is None
    )


@pytest.mark.parametrize("method", [b"OPTIONS", b"ACK", b"CANCEL", b"NEWMETHOD"])
def test_cseq_method_mismatch(method: bytes) -> None:
    """The CSeq method must equal the request method, ACK and CANCEL included."""
    error = _check(make_request(start=method + b" sip:bob@biloxi.example.com SIP/2.0"))
    assert isinstance(error, BadHeader) and "CSeq method" in error.reason


def test_version_other_than_2_0_is_505() -> None:
    """SIP/7.0 gives 505 with reply headers."""
    error = _check(make_request(start=b"INVITE sip:bob@biloxi.example.com SIP/7.0"))
    assert isinstance(error, VersionNotSupported)
    assert error.status == 505 and error.reply_headers is not None


def test_unknown_request_uri_scheme_is_416() -> None:
    """A non-SIP, non-tel Request-URI scheme is 416 Unsupported URI Scheme."""
    error = _check(make_request(start=b"INVITE soap.beep://192.0.2.103:3002 SIP/2.0"))
    assert isinstance(error, BadUri) and error.status == 416


def test_tel_request_uri_is_accepted() -> None:
    """tel: Request-URIs pass (the core routes them)."""
    assert _check(make_request(start=b"INVITE tel:+33162000001 SIP/2.0")) is None


def test_headers_in_request_uri_are_rejected() -> None:
    """Escaped headers in a Request-URI are a 400 (RFC 3261 §19.1.1, RFC 4475 escruri)."""
    error = _check(make_request(start=b"INVITE sip:u@example.com?Route=%3Csip:x%3E SIP/2.0"))
    assert isinstance(error, BadUri) and error.status == 400


def test_content_length_mismatch_after_edit() -> None:
    """A Content-Length that disagrees with the body (e.g. after an edit) is reported."""
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    msg.body = b"longer body"
    error = check_request(msg)
    assert isinstance(error, BadContentLength)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"CSeq: 314159 INVITE", b"CSeq: 36893488147419103232 INVITE"),
        (b"Max-Forwards: 70", b"Max-Forwards: 300"),
        (b"Max-Forwards: 70", b"Max-Forwards: -1"),
        (b"branch=z9hG4bK776asdhds", b"branch=z9hG4bK776asdhds;;"),
        (b"branch=z9hG4bK776asdhds", b"branch=z9hG4bK"),
        (b"From: Alice <", b"From: Alice, B <"),
        (b"Contact: <sip:alice@pc33.atlanta.example.com>", b"Contact: sip:a@b?x=y"),
        (b"Route: <sip:p1.example.com;lr>,", b"Route: <sip:p1.example.com;lr>,,"),
        (b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com", b"Call-ID: a b"),
    ],
)
def test_malformed_values_are_400(old: bytes, new: bytes) -> None:
    """Overflowing numbers, malformed Via/From/Contact/Route/Call-ID give a 400."""
    data = INVITE.replace(old, new)
    assert data != INVITE
    error = _check(data)
    assert error is not None and getattr(error, "status", None) == 400


def test_bad_date_is_rejected_and_good_date_accepted() -> None:
    """Date must be an RFC 1123 date in GMT (RFC 3261 §20.17, RFC 4475 baddate)."""
    assert _check(make_request(extra=b"Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n")) is None
    error = _check(make_request(extra=b"Date: Fri, 01 Jan 2010 16:00:00 EST\r\n"))
    assert isinstance(error, BadHeader) and "Date" in error.reason


def test_contact_star_is_accepted() -> None:
    """REGISTER with Contact: * passes."""
    data = make_request(start=b"REGISTER sip:example.com SIP/2.0", extra=b"Contact: *\r\n").replace(
        b"314159 INVITE", b"314159 REGISTER"
    )
    assert _check(data) is None
