"""Parsed messages: header access, edits and serialisation (RFC 3261 §7)."""

from __future__ import annotations

import pytest

from proxy.sip import Header, Request, Response, parse_message
from proxy.sip.errors import BadHeader, MissingHeader


def _request(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def test_header_access_by_long_compact_and_any_case(invite: bytes) -> None:
    """get() accepts canonical, lower-case and compact names."""
    msg = _request(invite)
    assert msg.get("call-id") == msg.get("i") == "a84b4c76e66710@pc33.atlanta.example.com"
    assert msg.get("CONTENT-TYPE") == msg.get("c") == "application/sdp"
    assert msg.get("X-Nope") is None


def test_compact_names_are_canonical_in_the_header_list() -> None:
    """A compact header line gets its canonical name but keeps its raw bytes."""
    msg = _request(
        b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\ni: x\r\nl: 0\r\n\r\n"
    )
    assert [h.name for h in msg.headers] == ["Via", "Call-ID", "Content-Length"]
    assert msg.headers[1].raw == b"i: x"
    assert msg.to_bytes().endswith(b"i: x\r\nl: 0\r\n\r\n")


def test_folded_header_is_unfolded_but_emitted_verbatim() -> None:
    """LWS continuation lines become one SP in value; the raw bytes are kept."""
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\n"
        b"Subject: one\r\n  two\r\n\tthree\r\n"
        b"CSeq: 0009\r\n  OPTIONS\r\n"
        b"l: 0\r\n\r\n"
    )
    msg = _request(data)
    assert msg.get("Subject") == "one two three"
    assert msg.cseq.seq == 9 and msg.cseq.method == "OPTIONS"
    assert msg.to_bytes() == data


def test_get_all_splits_list_headers_across_lines(invite: bytes) -> None:
    """get_all() comma-splits list headers and joins several lines, in order."""
    msg = _request(invite)
    msg.add("Route", "<sip:p3.example.com;lr>")
    assert msg.get_all("Route") == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr>",
        "<sip:p3.example.com;lr>",
    ]
    assert msg.get_all("Subject") == []


def test_get_all_does_not_split_non_list_headers() -> None:
    """Commas in non-list headers (Authorization) stay inside one value."""
    msg = _request(b'REGISTER sip:b SIP/2.0\r\nAuthorization: Digest a="1", b="2"\r\nl: 0\r\n\r\n')
    assert msg.get_all("Authorization") == ['Digest a="1", b="2"']


def test_typed_accessors(invite: bytes) -> None:
    """vias, top_via, call_id, cseq, from_, to, max_forwards give typed values."""
    msg = _request(invite)
    assert msg.top_via.host == "pc33.atlanta.example.com" and len(msg.vias) == 1
    assert msg.from_.tag == "1928301774" and msg.to.tag is None
    assert msg.to.display_name == "Bob"
    assert msg.max_forwards == 70
    assert msg.cseq.method == "INVITE"


def test_max_forwards_leading_zeros_and_range() -> None:
    """Max-Forwards 0068 is 68; 256 is malformed; absent is None."""
    base = b"OPTIONS sip:a@b SIP/2.0\r\n%sl: 0\r\n\r\n"
    assert _request(base % b"Max-Forwards: 0068\r\n").max_forwards == 68
    assert _request(base % b"").max_forwards is None
    with pytest.raises(BadHeader):
        _ = _request(base % b"Max-Forwards: 256\r\n").max_forwards


def test_missing_typed_header_raises_missing_header() -> None:
    """Accessing an absent mandatory header raises MissingHeader naming it."""
    msg = _request(b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n")
    for accessor, name in (
        ("call_id", "Call-ID"),
        ("cseq", "CSeq"),
        ("from_", "From"),
        ("to", "To"),
        ("top_via", "Via"),
    ):
        with pytest.raises(MissingHeader, match=name):
            getattr(msg, accessor)


def test_add_first_puts_header_on_top_of_its_name(invite: bytes) -> None:
    """add(first=True) goes before the existing Via; top_via sees it at once."""
    msg = _request(invite)
    _ = msg.top_via
    msg.add("v", "SIP/2.0/UDP proxy.example.net;branch=z9hG4bKp1", first=True)
    assert msg.top_via.host == "proxy.example.net"
    assert [v.host for v in msg.vias] == ["proxy.example.net", "pc33.atlanta.example.com"]
    assert msg.headers[0].name == "Via"
    wire = msg.to_bytes()
    assert wire.index(b"Via: SIP/2.0/UDP proxy") < wire.index(b"Via: SIP/2.0/UDP pc33")


def test_add_without_existing_header() -> None:
    """add(first=True) with no header of that name goes to the top; default to the end."""
    msg = _request(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nl: 0\r\n\r\n")
    msg.add("Record-Route", "<sip:p;lr>", first=True)
    msg.add("Subject", "hi")
    assert [h.name for h in msg.headers] == ["Record-Route", "Call-ID", "Content-Length", "Subject"]


def test_add_after_last_of_same_name() -> None:
    """A non-first add lands right after the last header of the same name."""
    msg = _request(b"OPTIONS sip:a@b SIP/2.0\r\nRoute: <sip:1>\r\nCall-ID: x\r\nl: 0\r\n\r\n")
    msg.add("Route", "<sip:2>")
    assert [h.name for h in msg.headers] == ["Route", "Route", "Call-ID", "Content-Length"]


def test_remove_and_replace(invite: bytes) -> None:
    """remove() counts removed lines; replace() leaves one line in the first position."""
    msg = _request(invite)
    msg.add("Route", "<sip:p3;lr>")
    assert msg.remove("route") == 2
    assert msg.get("Route") is None
    assert msg.remove("Route") == 0
    position = [h.name for h in msg.headers].index("Max-Forwards")
    msg.replace("Max-Forwards", "69")
    assert msg.max_forwards == 69
    assert msg.headers[position].name == "Max-Forwards" and msg.headers[position].raw is None
    msg.replace("Subject", "new")
    assert msg.get("Subject") == "new"


def test_replace_collapses_repeated_lines_into_the_first_position() -> None:
    """Several lines of the name become one, where the first was; the others go."""
    msg = _request(
        b"OPTIONS sip:a@b SIP/2.0\r\nSubject: a\r\nCall-ID: x\r\nSubject: b\r\n"
        b"Subject: c\r\nl: 0\r\n\r\n"
    )
    msg.replace("Subject", "new")
    assert [(h.name, h.value) for h in msg.headers] == [
        ("Subject", "new"),
        ("Call-ID", "x"),
        ("Content-Length", "0"),
    ]


def test_with_headers_keeps_the_start_line_over_the_given_headers(invite: bytes) -> None:
    """The reply template: same method, Request-URI text and version, no body."""
    msg = _request(invite)
    kept = [h for h in msg.headers if h.key in ("via", "call-id")]
    template = msg.with_headers(kept)
    assert (template.method, template.uri_text, template.version) == (
        msg.method,
        msg.uri_text,
        msg.version,
    )
    assert template.uri is msg.uri
    assert template.headers == kept and template.body == b""
    assert template.call_id == msg.call_id


def test_pop_first_value(invite: bytes) -> None:
    """pop_first_value removes the top comma-value, then the line when it is the last."""
    msg = _request(invite)
    assert msg.pop_first_value("Route") == "<sip:p1.example.com;lr>"
    assert msg.get_all("Route") == ["<sip:p2.example.com;lr>"]
    assert msg.pop_first_value("Route") == "<sip:p2.example.com;lr>"
    assert msg.get("Route") is None
    assert msg.pop_first_value("Route") is None
    assert b"Route" not in msg.to_bytes()


def test_to_bytes_keeps_unedited_lines_and_rewrites_content_length(invite: bytes) -> None:
    """Only edited lines change; Content-Length follows the body."""
    msg = _request(invite)
    assert msg.to_bytes() == invite
    msg.body = b"v=0\r\no=x\r\n"
    wire = msg.to_bytes()
    assert b"Content-Length: 10\r\n\r\nv=0\r\no=x\r\n" in wire
    assert (
        wire.replace(b"Content-Length: 10", b"Content-Length: 4").replace(
            b"v=0\r\no=x\r\n", b"v=0\n"
        )
        == invite
    )


def test_to_bytes_adds_missing_content_length_and_drops_duplicates() -> None:
    """A message without Content-Length gets one; equal duplicates collapse to one."""
    msg = _request(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nab")
    assert msg.to_bytes() == b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Length: 2\r\n\r\nab"
    dup = _request(b"OPTIONS sip:a@b SIP/2.0\r\nl: 2\r\nContent-Length: 2\r\n\r\nab")
    assert dup.to_bytes().count(b"2\r\n") == 1


def test_header_edit_clears_raw() -> None:
    """Assigning Header.value drops the raw bytes; a new Header has none."""
    header = Header("t", "<sip:a@b>")
    assert (header.name, header.raw) == ("To", None)
    msg = _request(b"OPTIONS sip:a@b SIP/2.0\r\nSubject:  old \r\nl: 0\r\n\r\n")
    subject = msg.headers[0]
    assert subject.raw == b"Subject:  old " and subject.value == "old"
    subject.value = "new"
    assert subject.raw is None
    assert b"Subject: new\r\n" in msg.to_bytes()


def test_request_uri_setter_updates_text(invite: bytes) -> None:
    """Setting uri re-serialises the Request-Line; uri_text stays verbatim otherwise."""
    msg = _request(invite.replace(b"sip:bob@biloxi", b"SIP:%62ob@biloxi", 1))
    assert msg.uri_text == "SIP:%62ob@biloxi.example.com"
    assert msg.to_bytes().startswith(b"INVITE SIP:%62ob@biloxi.example.com SIP/2.0\r\n")
    from proxy.sip import parse_uri

    msg.uri = parse_uri("sip:bob@10.0.0.2:5060")
    assert msg.to_bytes().startswith(b"INVITE sip:bob@10.0.0.2:5060 SIP/2.0\r\n")


def test_response_fields() -> None:
    """Status line fields, including an empty and a UTF-8 reason phrase."""
    msg = parse_message("SIP/2.0 200 = 2**3 * 5**2 но сто\r\nl: 0\r\n\r\n".encode())
    assert isinstance(msg, Response) and msg.status == 200 and msg.reason == "= 2**3 * 5**2 но сто"
    empty = parse_message(b"SIP/2.0 100 \r\nl: 0\r\n\r\n")
    assert isinstance(empty, Response) and empty.reason == ""
    assert empty.to_bytes() == b"SIP/2.0 100 \r\nl: 0\r\n\r\n"


def test_non_utf8_bytes_survive_a_round_trip() -> None:
    """Invalid UTF-8 in values is kept losslessly through surrogateescape, even when edited."""
    msg = _request(b"OPTIONS sip:a@b SIP/2.0\r\nSubject: caf\xe9\r\nl: 0\r\n\r\n")
    value = msg.get("Subject")
    assert value is not None
    msg.replace("Subject", value + "!")
    assert b"Subject: caf\xe9!\r\n" in msg.to_bytes()
