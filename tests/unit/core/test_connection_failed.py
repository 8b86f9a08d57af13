"""ConnectionFailed: the shell could not open a TCP/TLS connection (RFC 3261 §17.1.4, §16.9:
a transport error is a 503 from that branch), and the §18.1.1 retry over UDP of a request that
went over TCP only because of its size."""

from __future__ import annotations

from typing import Any

from proxy.core.actions import Action, Send, TrunkStateChanged
from proxy.core.events import ConnectionFailed
from proxy.sip.message import Request, Response
from tests.unit.core.core_helpers import (
    BASE_CONFIG,
    PBX1,
    TRUNK1,
    TRUNK2,
    Harness,
    Messages,
    ended,
    make_config,
    make_harness,
    parse,
    sends,
    statuses,
)

BIG_BODY = b"v=0\r\n" + b"a=x-padding:" + b"z" * 1400 + b"\r\n"


def _trunks(**per_trunk: dict[str, Any]) -> list[dict[str, Any]]:
    """The lab trunks with some settings changed, by trunk name."""
    return [{**t, **per_trunk.get(t["name"], {})} for t in BASE_CONFIG["trunks"]]


def _harness(**per_trunk: dict[str, Any]) -> Harness:
    return make_harness(make_config(trunks=_trunks(**per_trunk)))


def _requests(actions: list[Any], to: tuple[str, int]) -> list[tuple[Send, Request]]:
    """(Send, parsed request) for each request sent to `to` (pings left out)."""
    found = []
    for send in sends(actions, to):
        message = parse(send.data)
        if isinstance(message, Request):
            found.append((send, message))
    return found


def test_tcp_trunk_refused_fails_over_to_backup_at_once(msg: Messages) -> None:
    """A source's INVITE to a TCP trunk whose connection fails goes to the backup trunk at
    once (no Timer B wait), and the call completes there."""
    h = _harness(op1={"transport": "tcp"})
    first = h.feed(msg.request("INVITE"), PBX1)
    ((send, _),) = _requests(first, TRUNK1)
    assert send.transport == "tcp"
    moved = h.event(ConnectionFailed("tcp", TRUNK1, "Connection refused"))
    ((backup, request),) = _requests(moved, TRUNK2)
    assert backup.transport == "udp" and request.top_via.transport == "UDP"
    assert ended(moved) == []  # nothing answered upstream yet
    ok = h.feed(msg.response(backup.data, 200, "OK"), TRUNK2)
    assert statuses(ok, PBX1) == [200]
    assert [(e.status, e.trunk) for e in ended(ok)] == [(200, "op2")]


def test_no_backup_left_answers_503(msg: Messages) -> None:
    """Both trunks refuse: the INVITE is answered 503 (§16.9) right away."""
    h = _harness(op1={"transport": "tcp"}, op2={"transport": "tcp"})
    h.feed(msg.request("INVITE"), PBX1)
    h.event(ConnectionFailed("tcp", TRUNK1, "refused"))
    last = h.event(ConnectionFailed("tcp", TRUNK2, "refused"))
    assert statuses(last, PBX1) == [503]
    assert [e.status for e in ended(last)] == [503]


def test_non_invite_gets_503_not_silence(msg: Messages) -> None:
    """A MESSAGE whose connection fails is answered 503 (RFC 4320's no-408 rule is about
    timeouts, when the upstream has given up too; here it still waits)."""
    h = _harness(op1={"transport": "tcp", "backup": None})
    h.feed(msg.request("MESSAGE"), PBX1)
    failed = h.event(ConnectionFailed("tcp", TRUNK1, "refused"))
    assert statuses(failed, PBX1) == [503]


def test_answered_transactions_and_other_destinations_untouched(msg: Messages) -> None:
    """A branch that already had a provisional was delivered: a later connection failure to
    the same peer is about another message. Failures elsewhere change nothing."""
    h = _harness(op1={"transport": "tcp"})
    first = h.feed(msg.request("INVITE"), PBX1)
    ((send, _),) = _requests(first, TRUNK1)
    h.feed(msg.response(send.data, 180, "Ringing"), TRUNK1)
    assert h.event(ConnectionFailed("tcp", ("192.0.2.99", 5060), "refused")) == []
    assert h.event(ConnectionFailed("udp", TRUNK1, "refused")) == []
    assert h.event(ConnectionFailed("tcp", TRUNK1, "refused")) == []
    assert statuses(h.feed(msg.response(send.data, 200, "OK"), TRUNK1), PBX1) == [200]


def test_tcp_pings_failing_take_the_trunk_down() -> None:
    """OPTIONS pings over TCP that cannot connect count as failures at once (§17.1.4)."""
    h = _harness(op1={"transport": "tcp"})
    changes: list[Action] = []
    for _ in range(2):  # options_failures: 2
        pings = [s for s in sends(h.advance(30), TRUNK1, pings=True) if s.transport == "tcp"]
        assert pings
        changes += h.event(ConnectionFailed("tcp", TRUNK1, "refused"))
    assert [a for a in changes if isinstance(a, TrunkStateChanged)] == [
        TrunkStateChanged("op1", False)
    ]


def _big_invite(h: Harness, msg: Messages) -> tuple[Send, Request]:
    """A large INVITE from pbx1 to UDP trunk op1: it goes over TCP (§18.1.1)."""
    actions = h.feed(msg.request("INVITE", body=BIG_BODY), PBX1)
    ((send, request),) = _requests(actions, TRUNK1)
    assert send.transport == "tcp" and request.top_via.transport == "TCP"
    return send, request


def test_size_fallback_refused_retries_over_udp(msg: Messages) -> None:
    """§18.1.1: TCP chosen only for the size, connection refused -> the same request over
    UDP to the same trunk, top Via UDP with a new branch, our Record-Route for UDP; the call
    then completes over UDP, retransmitted by Timer A like any UDP INVITE."""
    h = _harness()
    tcp_send, tcp_request = _big_invite(h, msg)
    retried = h.event(ConnectionFailed("tcp", TRUNK1, "Connection refused"))
    assert sends(retried, TRUNK2) == [] and statuses(retried, PBX1) == []
    ((udp_send, udp_request),) = _requests(retried, TRUNK1)
    assert udp_send.transport == "udp"
    via = udp_request.top_via
    assert via.transport == "UDP" and via.branch != tcp_request.top_via.branch
    assert len(udp_request.vias) == len(tcp_request.vias)
    assert all("transport=tcp" not in rr for rr in udp_request.get_all("Record-Route"))
    assert udp_request.max_forwards == tcp_request.max_forwards  # decremented once only
    assert udp_request.body == BIG_BODY
    again = _requests(h.advance(0.6), TRUNK1)  # Timer A (T1 0.5 s)
    assert [s.data for s, _ in again] == [udp_send.data]
    ringing = h.feed(msg.response(udp_send.data, 180, "Ringing"), TRUNK1)
    ok = h.feed(msg.response(udp_send.data, 200, "OK"), TRUNK1)
    assert statuses(ringing + ok, PBX1) == [180, 200]
    assert [(e.status, e.trunk) for e in ended(ok)] == [(200, "op1")]
    # A response to the dead TCP branch matches nothing any more.
    stray = h.feed(msg.response(tcp_send.data, 200, "OK"), TRUNK1)
    assert statuses(stray, PBX1) == []


def _another_big_invite(msg: Messages, n: int) -> bytes:
    via = f"SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-uac-{n}"
    return msg.request("INVITE", call_id=f"c{n}@10.0.0.5", via=via, body=BIG_BODY)


def test_trunk_refusing_tcp_gets_large_requests_over_udp_for_a_while(msg: Messages) -> None:
    """After a refused size-fallback connection, the next large INVITE to that trunk goes
    straight over UDP (no new TCP attempt each call) until routing.tcp_refused_memory has
    passed; then TCP is tried again."""
    h = make_harness(make_config(routing={"tcp_refused_memory": 60}))
    _big_invite(h, msg)
    h.event(ConnectionFailed("tcp", TRUNK1, "Connection refused"))
    second = h.feed(_another_big_invite(msg, 2), PBX1)
    ((send, request),) = _requests(second, TRUNK1)
    assert send.transport == "udp" and request.top_via.transport == "UDP"
    h.advance(61)
    third = h.feed(_another_big_invite(msg, 3), PBX1)
    ((send, request),) = _requests(third, TRUNK1)
    assert send.transport == "tcp" and request.top_via.transport == "TCP"


def test_tcp_refused_memory_zero_tries_tcp_every_time(msg: Messages) -> None:
    h = make_harness(make_config(routing={"tcp_refused_memory": 0}))
    _big_invite(h, msg)
    h.event(ConnectionFailed("tcp", TRUNK1, "Connection refused"))
    second = h.feed(_another_big_invite(msg, 2), PBX1)
    ((send, _),) = _requests(second, TRUNK1)
    assert send.transport == "tcp"


def test_size_fallback_retry_failing_too_fails_over(msg: Messages) -> None:
    """When the UDP retry times out the branch fails as usual: Timer B -> 408 -> backup."""
    h = _harness()
    _big_invite(h, msg)
    h.event(ConnectionFailed("tcp", TRUNK1, "refused"))
    later = h.advance(33)
    backup = _requests(later, TRUNK2)
    assert backup and backup[0][0].transport == "tcp"  # op2 offers TCP for the big request


def test_udp_only_and_tcp_trunks_get_no_udp_retry(msg: Messages) -> None:
    """A trunk configured for TCP is not retried over UDP: it fails over (§16.9)."""
    h = _harness(op1={"transport": "tcp"})
    h.feed(msg.request("INVITE", body=BIG_BODY), PBX1)
    moved = h.event(ConnectionFailed("tcp", TRUNK1, "refused"))
    assert _requests(moved, TRUNK1) == []
    assert len(_requests(moved, TRUNK2)) == 1


def test_cancelled_size_fallback_is_not_retried(msg: Messages) -> None:
    """A CANCEL before the connection failed: no UDP retry, the INVITE gets its final."""
    h = _harness(op1={"backup": None})
    _big_invite(h, msg)
    h.feed(msg.request("CANCEL"), PBX1)
    failed = h.event(ConnectionFailed("tcp", TRUNK1, "refused"))
    assert _requests(failed, TRUNK1) == []
    finals = [m for m in (parse(s.data) for s in sends(failed, PBX1)) if isinstance(m, Response)]
    assert [m.cseq.method for m in finals] == ["INVITE"] and finals[0].status >= 400
