"""A basic call through the core: INVITE/100/180/200/ACK/BYE, source -> trunk."""

from __future__ import annotations

from proxy.sip.message import Request, Response
from tests.unit.core.core_helpers import (
    PBX1,
    PROXY,
    TRUNK1,
    Harness,
    Messages,
    ended,
    only_request,
    parsed,
    sends,
    statuses,
)


def test_basic_call_source_to_trunk(h: Harness, msg: Messages) -> None:
    """The whole call flows through, with Via, Record-Route and Max-Forwards handled."""
    invite = msg.request("INVITE")
    actions = h.feed(invite, PBX1)
    assert statuses(actions, PBX1) == [100]
    fwd = only_request(actions, TRUNK1)
    assert fwd.method == "INVITE"
    assert fwd.uri_text == "sip:+33612345678@192.0.2.1"
    assert fwd.max_forwards == 69
    assert fwd.top_via.host == "192.0.2.1" and fwd.top_via.branch.startswith("z9hG4bK")
    assert len(fwd.vias) == 2
    assert fwd.get_all("Record-Route") == ["<sip:192.0.2.1:5060;transport=udp;lr>"]

    wire = sends(actions, TRUNK1)[0].data
    assert h.feed(msg.response(wire, 100, "Trying"), TRUNK1) == []
    ringing = h.feed(msg.response(wire, 180, "Ringing"), TRUNK1)
    (up,) = parsed(ringing, PBX1)
    assert isinstance(up, Response) and up.status == 180 and len(up.vias) == 1
    ok = h.feed(msg.response(wire, 200, "OK"), TRUNK1)
    assert statuses(ok, PBX1) == [200]
    assert [e.status for e in ended(ok)] == [200]

    route = "<sip:192.0.2.1:5060;transport=udp;lr>"
    ack = msg.request(
        "ACK",
        uri="sip:uas@198.51.100.10:5060",
        via="SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-uac-ack",
        to_tag="uas1",
        headers=[("Route", route)],
    )
    acked = h.feed(ack, PBX1)
    fwd_ack = only_request(acked, TRUNK1)
    assert fwd_ack.method == "ACK" and fwd_ack.get("Route") is None

    bye = msg.request(
        "BYE",
        uri="sip:uas@198.51.100.10:5060",
        via="SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-uac-bye",
        cseq=2,
        to_tag="uas1",
        headers=[("Route", route)],
    )
    byes = h.feed(bye, PBX1)
    fwd_bye = only_request(byes, TRUNK1)
    assert isinstance(fwd_bye, Request) and fwd_bye.get("Record-Route") is None
    done = h.feed(msg.response(sends(byes, TRUNK1)[0].data, 200, "OK"), TRUNK1)
    assert statuses(done, PBX1) == [200]
    assert [(e.method, e.status, e.origin, e.trunk) for e in ended(done)] == [
        ("BYE", 200, "pbx1", "op1")
    ]
    assert PROXY  # the proxy's address is the one the lab config advertises
