"""§16.3 request validation, parse errors and the requests the proxy answers itself."""

from __future__ import annotations

from proxy.core.actions import MessageDropped, Send
from proxy.sip.message import Response
from tests.unit.core.core_helpers import (
    PBX1,
    STRANGER,
    TRUNK1,
    Harness,
    Messages,
    ended,
    parsed,
    sends,
    statuses,
)


def _final(actions: list, to: tuple[str, int] = PBX1) -> Response:  # type: ignore[type-arg]
    finals = [m for m in parsed(actions, to) if isinstance(m, Response) and m.status >= 200]
    assert len(finals) == 1, finals
    return finals[0]


def test_unparseable_request_gets_stateless_400_with_warning(h: Harness, msg: Messages) -> None:
    """A request with readable Via/From/To/Call-ID/CSeq but a bad header gets a 400 whose
    reason and Warning say what is wrong."""
    bad = msg.request("INVITE", headers=[("Date", "yesterday")])
    actions = h.feed(bad, PBX1)
    response = _final(actions)
    assert response.status == 400
    warning = response.get("Warning") or ""
    assert warning.startswith("399 ") and "Date" in warning
    assert sends(actions, TRUNK1) == []


def test_unreadable_message_is_dropped_and_counted(h: Harness) -> None:
    """Garbage cannot be answered: it is dropped with a MessageDropped action."""
    actions = h.feed(b"\x00\x01 hello\r\n\r\n", PBX1)
    assert [a.reason for a in actions if isinstance(a, MessageDropped)] == ["unparseable"]
    assert sends(actions) == []


def test_broken_ack_is_never_answered(h: Harness, msg: Messages) -> None:
    """No response is ever sent to an ACK (§17.1.1.3), even a broken one."""
    bad = msg.request("ACK", to_tag="x", headers=[("Date", "yesterday")])
    actions = h.feed(bad, PBX1)
    assert sends(actions) == []


def test_max_forwards_zero_gets_483(h: Harness, msg: Messages) -> None:
    """§16.3 step 3: Max-Forwards 0 is answered 483 Too Many Hops."""
    actions = h.feed(msg.request("INVITE", max_forwards=0), PBX1)
    assert statuses(actions, PBX1) == [100, 483]
    assert sends(actions, TRUNK1) == []


def test_options_with_max_forwards_zero_is_answered_by_us(h: Harness, msg: Messages) -> None:
    """§16.3 step 3: an OPTIONS with Max-Forwards 0 may be answered by the proxy."""
    actions = h.feed(msg.request("OPTIONS", max_forwards=0), PBX1)
    assert statuses(actions, PBX1) == [200]


def test_options_to_the_proxy_is_a_keepalive(h: Harness, msg: Messages) -> None:
    """OPTIONS whose Request-URI is us with no user gets 200 with Allow, not forwarded."""
    actions = h.feed(msg.request("OPTIONS", uri="sip:192.0.2.1:5060"), PBX1)
    response = _final(actions)
    assert response.status == 200 and "INVITE" in (response.get("Allow") or "")
    assert sends(actions, TRUNK1) == []


def test_options_to_a_user_is_forwarded(h: Harness, msg: Messages) -> None:
    """An OPTIONS for a user is a normal request and goes to the trunk."""
    actions = h.feed(msg.request("OPTIONS"), PBX1)
    assert len(sends(actions, TRUNK1)) == 1


def test_proxy_require_gets_420_with_unsupported(h: Harness, msg: Messages) -> None:
    """§16.3 step 5: an option tag in Proxy-Require we do not know gets 420 + Unsupported."""
    request = msg.request("INVITE", headers=[("Proxy-Require", "foo, bar")])
    response = _final(h.feed(request, PBX1))
    assert response.status == 420 and response.get("Unsupported") == "foo, bar"


def test_unsupported_uri_scheme_gets_416(h: Harness, msg: Messages) -> None:
    """A Request-URI scheme we cannot route is answered 416."""
    response = _final(h.feed(msg.request("INVITE", uri="http://example.com/x"), PBX1))
    assert response.status == 416


def test_unsupported_sip_version_gets_505(h: Harness, msg: Messages) -> None:
    """A SIP version other than 2.0 is answered 505."""
    request = msg.request("OPTIONS").replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1)
    response = _final(h.feed(request, PBX1))
    assert response.status == 505


def test_register_gets_405_with_allow(h: Harness, msg: Messages) -> None:
    """sipguard is no registrar: REGISTER gets 405 with an Allow header."""
    response = _final(h.feed(msg.request("REGISTER", uri="sip:192.0.2.1"), PBX1))
    assert response.status == 405 and "REGISTER" not in (response.get("Allow") or "")


def test_unknown_source_gets_403(h: Harness, msg: Messages) -> None:
    """No open relay: a request from an unconfigured address is refused."""
    request = msg.request("INVITE", via="SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bKx1")
    actions = h.feed(request, STRANGER)
    response = _final(actions, STRANGER)
    assert response.status == 403 and response.reason == "Unknown source"
    assert [(e.origin, e.status) for e in ended(actions)] == [("unknown", 403)]


def test_local_final_responses_carry_a_to_tag(h: Harness, msg: Messages) -> None:
    """A final response we generate has a To tag (§8.2.6.2), the same on retransmissions."""
    request = msg.request("INVITE", max_forwards=0)
    first = _final(h.feed(request, PBX1))
    again = [m for m in parsed(h.feed(request, PBX1), PBX1) if isinstance(m, Response)]
    assert first.to.tag is not None and again[0].to.tag == first.to.tag


def test_loop_is_detected_with_482(h: Harness, msg: Messages) -> None:
    """§16.3 step 4: our own request coming back unchanged has looped."""
    actions = h.feed(msg.request("INVITE"), PBX1)
    forwarded = sends(actions, TRUNK1)[0].data
    back = forwarded.replace(
        b"Via: ", b"Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKtrunk1\r\nVia: ", 1
    )
    response = _final(h.feed(back, TRUNK1), TRUNK1)
    assert response.status == 482


def test_spiral_is_not_a_loop(h: Harness, msg: Messages) -> None:
    """A request coming back with another Request-URI is a spiral and is proxied."""
    actions = h.feed(msg.request("INVITE"), PBX1)
    forwarded = sends(actions, TRUNK1)[0].data
    back = forwarded.replace(
        b"Via: ", b"Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKtrunk1\r\nVia: ", 1
    ).replace(b"INVITE sip:+33612345678@192.0.2.1", b"INVITE sip:+33991234567@192.0.2.1", 1)
    replies = h.feed(back, TRUNK1)
    assert statuses(replies, TRUNK1) == [100]
    assert any(isinstance(a, Send) and a.remote == ("10.0.1.5", 5060) for a in replies)
