"""Hypothesis properties of the SIP parser (h11's fuzz invariant, round trip)."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.sip import (
    Request,
    Response,
    SipParseError,
    StreamFramer,
    check_request,
    parse_message,
)

BASE = [
    (
        b"INVITE sip:bob@biloxi.example.com;transport=udp SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK776asdhds;rport\r\n"
        b"Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1;received=192.0.2.9, SIP/2.0/UDP h;branch=x\r\n"
        b"Max-Forwards: 0070\r\n"
        b"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
        b'To: "Bob \\"B\\"" <sip:bob@biloxi.example.com>\r\n'
        b"f: Alice <sip:alice%20x@atlanta.example.com>;tag=1928301774\r\n"
        b"i: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        b"CSeq: 314159\r\n INVITE\r\n"
        b"m: <sip:alice@pc33.atlanta.example.com>;expires=60\r\n"
        b"Content-Type: application/sdp\r\n"
        b"l: 4\r\n"
        b"\r\n"
        b"v=0\n"
    ),
    (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710\r\n"
        b"CSeq: 314159 INVITE\r\n"
        b"Record-Route: <sip:p1.example.com;lr>\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    ),
    (
        b"BYE tel:+33162000001;phone-context=example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/TLS client.example.com:5061;branch=z9hG4bKnashds7\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:alice@example.com>;tag=1\r\n"
        b"To: <sip:bob@example.com>;tag=2\r\n"
        b"Call-ID: x@y\r\n"
        b"CSeq: 2 BYE\r\n"
        b"\r\n"
    ),
]

SPECIAL = [
    b"\r\n",
    b"\r\n\r\n",
    b":",
    b";",
    b",",
    b"<",
    b">",
    b'"',
    b"\\",
    b" ",
    b"\t",
    b"%",
    b"@",
    b"\x00",
    b"\n",
    b"\r",
    b"999999999999999999999",
    b"SIP/2.0",
]


def _mutate(base: bytes, ops: list[tuple[int, int, int, bytes]]) -> bytes:
    data = bytearray(base)
    for kind, pos, length, chunk in ops:
        if not data:
            data.extend(chunk)
            continue
        pos %= len(data)
        if kind == 0:
            data[pos : pos + length] = b""
        elif kind == 1:
            data[pos:pos] = chunk
        else:
            data[pos : pos + length] = chunk
    return bytes(data)


_ops = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.integers(0, 10_000),
        st.integers(0, 20),
        st.one_of(st.sampled_from(SPECIAL), st.binary(max_size=8)),
    ),
    min_size=1,
    max_size=6,
)


def _exercise(data: bytes) -> None:
    """Parse, then touch every lazy accessor and the validator: only SipParseError."""
    try:
        msg = parse_message(data, max_size=4096)
    except SipParseError as error:
        assert error.status in (400, 416, 505, 513)
        if error.reply_headers is not None:
            assert error.method is not None
        return
    for accessor in ("vias", "top_via", "cseq", "from_", "to", "call_id", "max_forwards"):
        with contextlib.suppress(SipParseError):
            getattr(msg, accessor)
    for name in ("Contact", "Route", "Via", "Supported"):
        msg.get_all(name)
    if isinstance(msg, Request):
        error = check_request(msg)
        assert error is None or isinstance(error, SipParseError)
    again = parse_message(msg.to_bytes(), max_size=1 << 20)
    assert again.body == msg.body


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_sip_parse_error(data: bytes) -> None:
    """Arbitrary bytes either parse or raise SipParseError, never anything else."""
    _exercise(data)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BASE), _ops)
def test_mutated_messages_raise_only_sip_parse_error(
    base: bytes, ops: list[tuple[int, int, int, bytes]]
) -> None:
    """Mutations of valid messages either parse or raise SipParseError."""
    _exercise(_mutate(base, ops))


@settings(max_examples=300)
@given(st.sampled_from(BASE), _ops, st.lists(st.integers(1, 64), max_size=20))
def test_stream_framer_yields_only_bytes_or_sip_parse_error(
    base: bytes, ops: list[tuple[int, int, int, bytes]], cuts: list[int]
) -> None:
    """The framer returns bytes or SipParseError for any stream, however it is chunked."""
    data = _mutate(base, ops) + base
    framer = StreamFramer(max_size=4096)
    pos = 0
    for cut in [*cuts, len(data)]:
        for item in framer.feed(data[pos : pos + cut]):
            assert isinstance(item, bytes | SipParseError)
            if isinstance(item, bytes):
                _exercise(item)
        pos += cut


def _key_fields(msg: Request | Response) -> tuple[object, ...]:
    common = (
        [str(v) for v in msg.vias],
        msg.call_id,
        msg.cseq,
        str(msg.from_),
        str(msg.to),
        msg.max_forwards,
        msg.get_all("Route"),
        msg.get_all("Contact"),
        msg.body,
    )
    if isinstance(msg, Request):
        return (msg.method, msg.uri, msg.uri_text, *common)
    return (msg.status, msg.reason, *common)


_token = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
    min_size=1,
    max_size=12,
)
_host = st.from_regex(r"\A[a-z][a-z0-9]{0,8}(\.[a-z][a-z0-9]{0,8}){0,3}\Z") | st.sampled_from(
    ["192.0.2.1", "[2001:db8::1]", "[::1]"]
)
_user = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), min_size=1, max_size=10)
_display = st.one_of(
    st.none(),
    st.text(
        st.characters(codec="utf-8", exclude_characters="\r\n\x7f", min_codepoint=32), max_size=10
    ),
)


@st.composite
def _messages(draw: st.DrawFn) -> bytes:
    from proxy.sip.headers import NameAddr, Via
    from proxy.sip.uri import SipUri

    is_request = draw(st.booleans())
    method = draw(st.sampled_from(["INVITE", "ACK", "BYE", "OPTIONS", "REGISTER"]))
    target = SipUri(
        user=draw(_user), host=draw(_host), port=draw(st.none() | st.integers(1, 65535))
    )
    vias = [
        Via(
            "SIP/2.0",
            draw(st.sampled_from(["UDP", "TCP", "TLS"])),
            draw(_host),
            draw(st.none() | st.integers(1, 65535)),
            {"branch": "z9hG4bK" + draw(_token)},
        )
        for _ in range(draw(st.integers(1, 3)))
    ]
    if draw(st.booleans()):
        vias[0].params["rport"] = None
    from_ = NameAddr(
        draw(_display), SipUri(user=draw(_user), host=draw(_host)), {"tag": draw(_token)}
    )
    to = NameAddr(draw(_display), SipUri(user=draw(_user), host=draw(_host)), {})
    body = draw(st.binary(max_size=40))
    compact = draw(st.booleans())
    lines = [
        f"{method} {target} SIP/2.0"
        if is_request
        else f"SIP/2.0 {draw(st.integers(100, 699))} {draw(_token)}"
    ]
    lines += [f"{'v' if compact else 'Via'}: {v}" for v in vias]
    lines += [
        f"{'f' if compact else 'From'}: {from_}",
        f"{'t' if compact else 'To'}: {to}",
        f"{'i' if compact else 'Call-ID'}: {draw(_token)}@{draw(_host)}",
        f"CSeq: {draw(st.integers(0, 2**31 - 1))} {method}",
        f"Max-Forwards: {draw(st.integers(0, 255))}",
        f"Route: <sip:{draw(_host)};lr>",
        f"{'l' if compact else 'Content-Length'}: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


@settings(max_examples=300)
@given(_messages())
def test_parse_serialise_parse_keeps_key_fields(data: bytes) -> None:
    """parse(to_bytes(parse(m))) equals parse(m) on the key fields; unedited bytes stay."""
    first = parse_message(data)
    if isinstance(first, Request):
        assert check_request(first) is None
    wire = first.to_bytes()
    assert wire == data
    second = parse_message(wire)
    assert _key_fields(second) == _key_fields(first)


@settings(max_examples=300)
@given(_messages(), st.data())
def test_edited_messages_round_trip(data: bytes, draw: st.DataObject) -> None:
    """After proxy-style edits (new top Via, popped Route, MF-1) the bytes re-parse equal."""
    msg = parse_message(data)
    msg.add("Via", f"SIP/2.0/UDP proxy.example.net;branch=z9hG4bK{draw.draw(_token)}", first=True)
    msg.pop_first_value("Route")
    if msg.max_forwards:
        msg.replace("Max-Forwards", str(msg.max_forwards - 1))
    msg.body = draw.draw(st.binary(max_size=30))
    again = parse_message(msg.to_bytes())
    assert _key_fields(again) == _key_fields(msg)
    assert again.top_via.host == "proxy.example.net"
