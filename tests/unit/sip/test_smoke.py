"""Smoke tests of the ordinary INVITE / 200 / ACK / BYE path."""

from proxy.sip import Request, Response, build_response, check_request, parse_message

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
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


def test_invite_parses_validates_and_round_trips() -> None:
    """A plain INVITE parses, validates cleanly and re-serialises byte-for-byte."""
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert msg.cseq.seq == 314159
    assert msg.top_via.branch == "z9hG4bK776asdhds"
    assert check_request(msg) is None
    assert msg.to_bytes() == INVITE


def test_build_200_copies_dialog_headers() -> None:
    """build_response copies Via/From/To/Call-ID/CSeq and adds the To tag."""
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    reply = parse_message(build_response(msg, 200, to_tag="314").to_bytes())
    assert isinstance(reply, Response)
    assert (reply.status, reply.reason) == (200, "OK")
    assert reply.to.tag == "314"
    assert reply.call_id == msg.call_id
    assert reply.body == b""
