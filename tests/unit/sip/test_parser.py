"""parse_message errors and datagram framing, and StreamFramer (RFC 3261 §7, §18.3)."""

from __future__ import annotations

import pytest

from proxy.sip import (
    AbsoluteUri,
    Request,
    SipParseError,
    StreamFramer,
    parse_message,
)
from proxy.sip.errors import (
    BadContentLength,
    BadHeader,
    BadStartLine,
    BadUri,
    MessageTooLarge,
    MissingHeader,
)

from .conftest import INVITE, make_request


def _error(data: bytes, **kwargs: int) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_message(data, **kwargs)
    return info.value


def test_body_longer_than_content_length_is_truncated() -> None:
    """UDP: octets beyond Content-Length are dropped (RFC 3261 §18.3)."""
    msg = parse_message(INVITE + b"INVITE sip:x SIP/2.0\r\n\r\n")
    assert msg.body == b"v=0\n"


def test_body_shorter_than_content_length_is_a_400() -> None:
    """UDP: a body shorter than Content-Length is an error that can be answered."""
    error = _error(INVITE[:-2])
    assert isinstance(error, BadContentLength)
    assert (error.status, error.reason) == (400, "Content-Length larger than body")
    assert error.method == "INVITE" and error.reply_headers is not None


def test_missing_content_length_on_udp_means_rest_of_datagram() -> None:
    """Without Content-Length the datagram's remaining octets are the body."""
    msg = parse_message(b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nhello\r\n")
    assert msg.body == b"hello\r\n"


@pytest.mark.parametrize("value", [b"-999", b"abc", b"1 2", b"", b"9" * 13])
def test_malformed_content_length(value: bytes) -> None:
    """Non-numeric, negative or absurd Content-Length values are rejected."""
    error = _error(INVITE.replace(b"Content-Length: 4", b"Content-Length: " + value))
    assert isinstance(error, BadContentLength) and error.status == 400


def test_conflicting_content_lengths() -> None:
    """Two different Content-Length values are a framing error (RFC 4475 mcl01)."""
    error = _error(INVITE.replace(b"Content-Type", b"l: 3\r\nContent-Type"))
    assert isinstance(error, BadContentLength) and "Conflicting" in error.reason


def test_leading_crlf_before_start_line_is_ignored() -> None:
    """CRLFs before the start line are skipped (RFC 3261 §7.5)."""
    assert isinstance(parse_message(b"\r\n\r\n" + INVITE), Request)


@pytest.mark.parametrize(
    "start",
    [
        b"INVITE  sip:bob@biloxi.example.com SIP/2.0",
        b"INVITE sip:bob@biloxi.example.com SIP/2.0  ",
        b"INVITE sip:bob@biloxi.example.com; lr SIP/2.0",
        b"INVITE sip:bob@biloxi.example.com",
        b"INVITE sip:bob@biloxi.example.com SIP/2",
    ],
)
def test_malformed_request_line_has_reply_headers(start: bytes) -> None:
    """A broken Request-Line is a 400 carrying method and the readable headers."""
    error = _error(make_request(start=start))
    assert isinstance(error, BadStartLine)
    assert error.method == "INVITE"
    assert error.reply_headers is not None
    names = [name for name, _ in error.reply_headers]
    assert sorted(names) == ["CSeq", "Call-ID", "From", "To", "Via"]


@pytest.mark.parametrize(
    "uri", [b"<sip:bob@biloxi.example.com>", b"sip:bob@bi<loxi", b'sip:"bob"@x']
)
def test_request_uri_with_angle_brackets_or_quotes_is_rejected(uri: bytes) -> None:
    """An unescaped <, > or quote in the Request-URI is a 400 (RFC 4475 ltgtruri)."""
    error = _error(make_request(start=b"INVITE " + uri + b" SIP/2.0"))
    assert isinstance(error, BadUri) and error.status == 400 and error.reply_headers is not None


def test_unknown_request_uri_scheme_is_exposed() -> None:
    """parse_message keeps an unknown scheme as AbsoluteUri (the 416 comes later)."""
    msg = parse_message(make_request(start=b"OPTIONS nobodyKnowsThisScheme:opaque SIP/2.0"))
    assert isinstance(msg, Request) and msg.uri == AbsoluteUri(
        "nobodyknowsthisscheme", "nobodyKnowsThisScheme:opaque"
    )


def test_other_sip_versions_parse() -> None:
    """SIP/7.0 parses; check_request turns it into a 505."""
    msg = parse_message(make_request(start=b"INVITE sip:bob@biloxi.example.com SIP/7.0"))
    assert isinstance(msg, Request) and msg.version == "SIP/7.0"


@pytest.mark.parametrize(
    "line",
    [b"Foobar roobar", b": value", b"Bad Name: x", b"X-\xff: y", b" leading: fold"],
)
def test_malformed_header_lines(line: bytes) -> None:
    """Lines without a colon, with a bad name, or a leading fold are BadHeader."""
    data = (
        INVITE.replace(b"Via:", line + b"\r\nVia:", 1)
        if line[:1] != b" "
        else make_request(start=b"INVITE sip:a@b SIP/2.0\r\n leading: fold")
    )
    error = _error(data)
    assert isinstance(error, BadHeader)


@pytest.mark.parametrize("smuggled", [b"Subject: a\nVia: evil", b"Subject: a\rb"])
def test_bare_cr_or_lf_in_headers_is_rejected(smuggled: bytes) -> None:
    """Bare CR or LF inside the header block is refused (no header smuggling)."""
    error = _error(INVITE.replace(b"Content-Type", smuggled + b"\r\nContent-Type"))
    assert isinstance(error, BadHeader) and "Bare CR or LF" in error.reason


def test_response_errors_have_no_reply_headers() -> None:
    """A broken response is never answered: reply_headers and method are None."""
    error = _error(b"SIP/2.0 4294967301 big\r\nVia: SIP/2.0/UDP h\r\nl: 0\r\n\r\n")
    assert isinstance(error, BadStartLine)
    assert (error.reply_headers, error.method) == (None, None)


def test_missing_headers_means_no_reply_headers() -> None:
    """Without all of Via/From/To/Call-ID/CSeq there is nothing to answer with."""
    error = _error(make_request(start=b"INVITE  sip:a@b SIP/2.0", drop=("Call-ID",)))
    assert error.method == "INVITE" and error.reply_headers is None


def test_reply_headers_skip_values_with_control_line_breaks() -> None:
    """A value with a bare LF is not echoed (it would break the reply's framing)."""
    data = make_request(start=b"INVITE  sip:a@b SIP/2.0").replace(b"Call-ID: a", b"Call-ID: \na")
    error = _error(data)
    assert error.reply_headers is None


def test_no_empty_line_is_an_error() -> None:
    """A message without the empty line ending the headers is rejected."""
    assert isinstance(_error(INVITE.split(b"\r\n\r\n")[0]), BadStartLine)
    assert isinstance(_error(b""), BadStartLine)


def test_message_too_large() -> None:
    """Above max_size the message is a 513 with reply headers."""
    error = _error(INVITE, max_size=len(INVITE) - 1)
    assert isinstance(error, MessageTooLarge)
    assert error.status == 513 and error.reply_headers is not None
    assert isinstance(parse_message(INVITE, max_size=len(INVITE)), Request)


def test_framer_splits_pipelined_messages_and_skips_keepalives() -> None:
    """Several messages in one chunk come out whole; CRLFCRLF pings are counted."""
    framer = StreamFramer()
    out = framer.feed(b"\r\n\r\n" + INVITE + b"\r\n\r\n\r\n\r\n" + INVITE + b"\r\n")
    assert out == [INVITE, INVITE]
    assert framer.keepalive_pings == 3
    assert framer.buffered == 2  # a lone CRLF may be the start of another ping


def test_framer_byte_by_byte() -> None:
    """Feeding one octet at a time yields the same messages."""
    framer = StreamFramer()
    out: list[bytes | SipParseError] = []
    for i in range(len(INVITE) * 2):
        out += framer.feed((INVITE * 2)[i : i + 1])
    assert out == [INVITE, INVITE] and framer.buffered == 0


def test_framer_waits_for_the_body() -> None:
    """A message is held until Content-Length octets of body arrived (RFC 4475 clerr)."""
    framer = StreamFramer()
    assert framer.feed(INVITE[:-1]) == []
    assert framer.feed(INVITE[-1:]) == [INVITE]


def test_framer_needs_content_length() -> None:
    """On a stream a missing Content-Length is an answerable error, then the framer stops."""
    framer = StreamFramer()
    data = make_request().replace(b"Content-Length: 4\r\n", b"")
    (error,) = framer.feed(data)
    assert isinstance(error, MissingHeader) and error.reply_headers is not None
    assert framer.failed
    assert framer.feed(INVITE) == []


def test_framer_bad_content_length() -> None:
    """A negative Content-Length on a stream is a BadContentLength error."""
    (error,) = StreamFramer().feed(INVITE.replace(b"Content-Length: 4", b"Content-Length: -4"))
    assert isinstance(error, BadContentLength)


def test_framer_size_limits() -> None:
    """Headers or declared body above max_size give MessageTooLarge (513)."""
    (error,) = StreamFramer(max_size=100).feed(b"INVITE sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 30)
    assert isinstance(error, MessageTooLarge) and error.status == 513
    big = INVITE.replace(b"Content-Length: 4", b"Content-Length: 70000")
    (error2,) = StreamFramer().feed(big)
    assert isinstance(error2, MessageTooLarge) and error2.reply_headers is not None
