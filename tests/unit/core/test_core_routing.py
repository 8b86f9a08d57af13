"""Routing: origins, trunks and PBXs, Route handling, Record-Route, Via, NAT, transports."""

from __future__ import annotations

from typing import Any

from proxy.sip.message import Request
from tests.unit.core.core_helpers import (
    BASE_CONFIG,
    PBX1,
    PBX2,
    TRUNK1,
    Harness,
    Messages,
    make_config,
    make_harness,
    only_request,
    parsed,
    sends,
    statuses,
)

US = "<sip:192.0.2.1:5060;transport=udp;lr>"


def _trunks(**changes: Any) -> list[dict[str, Any]]:
    trunks = [dict(t) for t in BASE_CONFIG["trunks"]]
    trunks[0].update(changes)
    return trunks


def test_preloaded_route_is_stripped_by_default(h: Harness, msg: Messages) -> None:
    """A Route not naming us is removed and the call still goes to the source's trunk."""
    request = msg.request("INVITE", headers=[("Route", "<sip:evil.example.com;lr>")])
    forwarded = only_request(h.feed(request, PBX1), TRUNK1)
    assert forwarded.get("Route") is None


def test_preloaded_route_rejected_when_configured(msg: Messages) -> None:
    """With routing.preloaded_route: reject the request is answered 403."""
    h = make_harness(make_config(routing={"preloaded_route": "reject"}))
    request = msg.request("INVITE", headers=[("Route", "<sip:evil.example.com;lr>")])
    actions = h.feed(request, PBX1)
    assert statuses(actions, PBX1) == [100, 403]
    assert sends(actions, TRUNK1) == []


def test_route_naming_us_is_popped(h: Harness, msg: Messages) -> None:
    """§16.4: a Route entry for this proxy is removed, the rest of the route kept."""
    request = msg.request(
        "MESSAGE", to_tag="t1", headers=[("Route", f"{US}, <sip:198.51.100.10;lr>")]
    )
    forwarded = only_request(h.feed(request, PBX1), TRUNK1)
    assert forwarded.get_all("Route") == ["<sip:198.51.100.10;lr>"]


def test_in_dialog_request_follows_the_request_uri(h: Harness, msg: Messages) -> None:
    """An in-dialog BYE with only our Route goes to its Request-URI (the remote target)."""
    request = msg.request(
        "BYE", uri="sip:peer@198.51.100.77:5080", to_tag="t1", headers=[("Route", US)]
    )
    forwarded = only_request(h.feed(request, PBX1), ("198.51.100.77", 5080))
    assert forwarded.get("Route") is None and forwarded.get("Record-Route") is None


def test_in_dialog_hostname_is_not_resolved(h: Harness, msg: Messages) -> None:
    """Without routing.resolve_hostnames a host name next hop gets 476."""
    request = msg.request("BYE", uri="sip:peer@far.example.net", to_tag="t1")
    assert statuses(h.feed(request, PBX1), PBX1) == [476]


def test_strict_router_request_uri_is_restored(h: Harness, msg: Messages) -> None:
    """§16.4: our address in the Request-URI means the last Route is the real target."""
    request = msg.request(
        "BYE",
        uri="sip:192.0.2.1:5060;lr",
        to_tag="t1",
        headers=[("Route", "<sip:peer@198.51.100.77:5080>")],
    )
    forwarded = only_request(h.feed(request, PBX1), ("198.51.100.77", 5080))
    assert forwarded.uri_text == "sip:peer@198.51.100.77:5080"
    assert forwarded.get("Route") is None


def test_inbound_call_goes_to_pbx_by_longest_prefix(h: Harness, msg: Messages) -> None:
    """From a trunk: +3399... matches the longer prefix (pbx2), +339... pbx1, else default."""
    cases = [("+33991234567", PBX2), ("+33912345678", PBX1), ("+33112345678", PBX1)]
    for index, (number, pbx) in enumerate(cases):
        request = msg.request(
            "INVITE",
            uri=f"sip:{number}@192.0.2.1",
            via=f"SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKin{index}",
            call_id=f"in-{index}",
        )
        actions = h.feed(request, TRUNK1)
        assert len(sends(actions, pbx)) == 1, number


def test_source_with_tls_subject_must_present_it(msg: Messages) -> None:
    """A source restricted to a TLS subject is unknown without that subject."""
    sources = [dict(s) for s in BASE_CONFIG["sources"]]
    sources[0]["tls_subject"] = "CN=pbx1.example.com"
    h = make_harness(make_config(sources=sources))
    request = msg.request("OPTIONS", via="SIP/2.0/TLS 10.0.0.5:5061;branch=z9hG4bKt1")
    wrong = h.feed_stream(request, ("10.0.0.5", 40000), transport="tls", tls_subject="CN=x")
    assert statuses(wrong) == [403]
    request = msg.request("OPTIONS", via="SIP/2.0/TLS 10.0.0.5:5061;branch=z9hG4bKt2")
    right = h.feed_stream(
        request, ("10.0.0.5", 40000), transport="tls", tls_subject="CN=pbx1.example.com"
    )
    assert len(sends(right, TRUNK1)) == 1


def test_responses_go_back_on_the_connection(h: Harness, msg: Messages) -> None:
    """A request over TCP is answered on the same connection (§18.2.2)."""
    request = msg.request("INVITE", via="SIP/2.0/TCP 10.0.0.5:5060;branch=z9hG4bKtcp1")
    actions = h.feed_stream(request, ("10.0.0.5", 40001), connection_id=42)
    trying = [s for s in sends(actions) if s.remote[0] == "10.0.0.5"]
    assert [(s.transport, s.connection_id) for s in trying] == [("tcp", 42)]


def test_record_route_doubles_when_the_transport_changes(msg: Messages) -> None:
    """RFC 5658: UDP in, TCP out -> two Record-Route entries, the downstream one on top."""
    h = make_harness(make_config(trunks=_trunks(transport="tcp")))
    actions = h.feed(msg.request("INVITE"), PBX1)
    (send,) = sends(actions, TRUNK1)
    assert send.transport == "tcp"
    forwarded = parsed([send])[0]
    assert isinstance(forwarded, Request)
    assert forwarded.get_all("Record-Route") == [
        "<sip:192.0.2.1:5060;transport=tcp;lr>",
        "<sip:192.0.2.1:5060;transport=udp;lr>",
    ]
    assert forwarded.top_via.transport == "TCP"


def test_large_request_to_a_udp_trunk_goes_over_tcp(h: Harness, msg: Messages) -> None:
    """§18.1.1: over 1300 bytes the request goes over TCP, Via saying so."""
    request = msg.request("MESSAGE", body=b"x" * 1400, headers=[("Content-Type", "text/plain")])
    (send,) = sends(h.feed(request, PBX1), TRUNK1)
    assert send.transport == "tcp"
    forwarded = parsed([send])[0]
    assert isinstance(forwarded, Request) and forwarded.top_via.transport == "TCP"
    assert len(forwarded.vias) == 2


def test_udp_only_trunk_keeps_large_requests_on_udp(msg: Messages) -> None:
    """A trunk marked udp_only never gets TCP."""
    h = make_harness(make_config(trunks=_trunks(udp_only=True)))
    request = msg.request("MESSAGE", body=b"x" * 1400, headers=[("Content-Type", "text/plain")])
    (send,) = sends(h.feed(request, PBX1), TRUNK1)
    assert send.transport == "udp"


def test_natted_pbx_is_answered_at_received_rport(h: Harness, msg: Messages) -> None:
    """RFC 3581: a Via with rport from a NAT gets received/rport and the answers go to the
    address and port the request came from, from the socket it arrived on."""
    nat = ("10.0.0.99", 31999)
    request = msg.request("INVITE", via="SIP/2.0/UDP 172.16.0.5:5060;rport;branch=z9hG4bKnat")
    actions = h.feed(request, nat)
    (trying,) = sends(actions, nat)
    assert trying.local == ("192.0.2.1", 5060)
    response = parsed([trying])[0]
    assert response.top_via.received == "10.0.0.99" and response.top_via.rport == 31999
    forwarded = only_request(actions, TRUNK1)
    assert forwarded.vias[1].received == "10.0.0.99"


def test_without_rport_answers_go_to_the_via_port(h: Harness, msg: Messages) -> None:
    """RFC 3261 §18.2.2: no rport -> received address, sent-by port."""
    request = msg.request("INVITE", via="SIP/2.0/UDP 172.16.0.5:5070;branch=z9hG4bKnorport")
    actions = h.feed(request, ("10.0.0.99", 31999))
    assert statuses(actions, ("10.0.0.99", 5070)) == [100]


def test_worker_address_goes_in_via_and_record_route(msg: Messages) -> None:
    """Multi-worker: the worker's private port is in Via and Record-Route."""
    h = make_harness(advertised={"udp": ("192.0.2.1", 40123)})
    forwarded = only_request(h.feed(msg.request("INVITE"), PBX1), TRUNK1)
    assert forwarded.top_via.port == 40123
    assert forwarded.get_all("Record-Route") == ["<sip:192.0.2.1:40123;transport=udp;lr>"]
    # ... and an in-dialog request to that port is recognised as addressed to us.
    bye = msg.request(
        "BYE",
        uri="sip:peer@198.51.100.10:5060",
        to_tag="t",
        headers=[("Route", "<sip:192.0.2.1:40123;transport=udp;lr>")],
    )
    assert only_request(h.feed(bye, PBX1), TRUNK1).get("Route") is None


def test_in_dialog_request_uses_the_transport_of_our_double_record_route(
    msg: Messages,
) -> None:
    """RFC 5658: after a double Record-Route (UDP in, TCP out) the caller's BYE carries
    both our entries; they are popped and the BYE leaves over TCP, as the second said."""
    h = make_harness(make_config(trunks=_trunks(transport="tcp")))
    routes = "<sip:192.0.2.1:5060;transport=udp;lr>, <sip:192.0.2.1:5060;transport=tcp;lr>"
    bye = msg.request(
        "BYE", uri="sip:uas@198.51.100.77:5060", to_tag="t1", headers=[("Route", routes)]
    )
    (send,) = sends(h.feed(bye, PBX1), ("198.51.100.77", 5060))
    assert send.transport == "tcp"
    forwarded = parsed([send])[0]
    assert isinstance(forwarded, Request) and forwarded.get("Route") is None
    assert forwarded.top_via.transport == "TCP"
