"""Transaction behaviour seen through the core: absorption, ACKs, 2xx, CANCEL, timers."""

from __future__ import annotations

from typing import Any

from proxy.core.actions import MessageDropped
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
    only_request,
    parsed,
    sends,
    statuses,
)


def _no_backup() -> Harness:
    trunks: list[dict[str, Any]] = [dict(t) for t in BASE_CONFIG["trunks"]]
    trunks[0]["backup"] = None
    return make_harness(make_config(trunks=trunks))


def _call(h: Harness, msg: Messages, method: str = "INVITE") -> bytes:
    """Send a request from PBX1 and return what reached TRUNK1."""
    (send,) = sends(h.feed(msg.request(method), PBX1), TRUNK1)
    return send.data


def test_invite_retransmission_is_absorbed_and_100_resent(h: Harness, msg: Messages) -> None:
    """A retransmitted INVITE is not forwarded again; the 100 is repeated (§17.2.1)."""
    _call(h, msg)
    again = h.feed(msg.request("INVITE"), PBX1)
    assert statuses(again, PBX1) == [100]
    assert sends(again, TRUNK1) == []


def test_100_from_downstream_is_not_forwarded(h: Harness, msg: Messages) -> None:
    """§16.7 step 5: a 100 stops at the proxy."""
    wire = _call(h, msg)
    assert h.feed(msg.response(wire, 100, "Trying"), TRUNK1) == []


def test_downstream_retransmissions_stop_after_provisional(h: Harness, msg: Messages) -> None:
    """Timer A retransmits the INVITE downstream until a provisional arrives."""
    wire = _call(h, msg)
    assert len(sends(h.advance(0.6), TRUNK1)) == 1
    h.feed(msg.response(wire, 180, "Ringing"), TRUNK1)
    assert sends(h.advance(20), TRUNK1) == []


def test_non_2xx_is_acked_downstream_and_upstream_ack_absorbed(h: Harness, msg: Messages) -> None:
    """A 486 is ACKed hop by hop by us and forwarded; the caller's ACK stops at us."""
    wire = _call(h, msg)
    actions = h.feed(msg.response(wire, 486, "Busy Here"), TRUNK1)
    ack = only_request(actions, TRUNK1)
    assert ack.method == "ACK" and ack.to.tag == "uas1"
    assert statuses(actions, PBX1) == [486]
    upstream_ack = msg.request("ACK", to_tag="uas1")
    assert sends(h.feed(upstream_ack, PBX1)) == []


def test_non_2xx_retransmitted_upstream_until_acked(h: Harness, msg: Messages) -> None:
    """Without the caller's ACK, Timer G resends our 486 upstream."""
    wire = _call(h, msg)
    h.feed(msg.response(wire, 486, "Busy Here"), TRUNK1)
    assert statuses(h.advance(0.6), PBX1) == [486]
    h.feed(msg.request("ACK", to_tag="uas1"), PBX1)
    assert statuses(h.advance(10), PBX1) == []


def test_2xx_retransmissions_are_forwarded_not_absorbed(h: Harness, msg: Messages) -> None:
    """RFC 6026: every 200 OK retransmission from the callee goes up."""
    wire = _call(h, msg)
    ok = msg.response(wire, 200, "OK")
    assert statuses(h.feed(ok, TRUNK1), PBX1) == [200]
    assert statuses(h.feed(ok, TRUNK1), PBX1) == [200]
    assert statuses(h.advance(5), PBX1) == []  # we never retransmit a 2xx ourselves


def test_2xx_ack_goes_statelessly_with_a_stable_branch(h: Harness, msg: Messages) -> None:
    """The ACK for a 2xx is forwarded; its retransmission gets the same branch (§16.11)."""
    wire = _call(h, msg)
    h.feed(msg.response(wire, 200, "OK"), TRUNK1)
    ack = msg.request(
        "ACK",
        uri="sip:uas@198.51.100.10:5060",
        via="SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-ack-1",
        to_tag="uas1",
        headers=[("Route", "<sip:192.0.2.1:5060;transport=udp;lr>")],
    )
    first = only_request(h.feed(ack, PBX1), TRUNK1)
    second = only_request(h.feed(ack, PBX1), TRUNK1)
    assert first.top_via.branch == second.top_via.branch
    assert first.max_forwards == 69


def test_stray_response_is_dropped(h: Harness, msg: Messages) -> None:
    """A response matching no client transaction is dropped and counted."""
    stray = msg.response(msg.request("INVITE"), 200, "OK")
    actions = h.feed(stray, TRUNK1)
    assert [a.reason for a in actions if isinstance(a, MessageDropped)] == ["stray_response"]


def test_timer_b_gives_408_upstream() -> None:
    """No answer from the trunk for 64*T1: 408 upstream (§16.7 step 1)."""
    h = _no_backup()
    msg = Messages()
    _call(h, msg)
    actions = h.advance(32.1)
    assert statuses(actions, PBX1) == [408]
    assert [(e.status, e.trunk) for e in ended(actions)] == [(408, "op1")]


def test_non_invite_timeout_sends_no_408(msg: Messages) -> None:
    """RFC 4320 §4.1: a non-INVITE timeout is logged but not answered with 408."""
    h = _no_backup()
    _call(h, msg, "MESSAGE")
    actions = h.advance(32.1)
    assert statuses(actions, PBX1) == []
    assert [(e.method, e.status) for e in ended(actions)] == [("MESSAGE", 408)]
    assert not h.core.busy()  # the upstream transaction was let go, not kept forever


def test_cancel_flow(h: Harness, msg: Messages) -> None:
    """§16.10: CANCEL answered 200 hop by hop, CANCEL sent downstream on the same branch,
    the 487 ACKed downstream and forwarded upstream."""
    wire = _call(h, msg)
    h.feed(msg.response(wire, 180, "Ringing"), TRUNK1)
    actions = h.feed(msg.request("CANCEL"), PBX1)
    responses = [m for m in parsed(actions, PBX1) if isinstance(m, Response)]
    assert [(r.status, r.cseq.method) for r in responses] == [(200, "CANCEL")]
    cancel = only_request(actions, TRUNK1)
    invite = parsed([sends(h.log, TRUNK1)[0]])[0]
    assert isinstance(invite, Request)
    assert cancel.method == "CANCEL" and cancel.top_via.branch == invite.top_via.branch
    assert h.feed(msg.response(cancel, 200, "OK"), TRUNK1) == []
    terminated = h.feed(msg.response(wire, 487, "Request Terminated"), TRUNK1)
    assert only_request(terminated, TRUNK1).method == "ACK"
    assert statuses(terminated, PBX1) == [487]


def test_cancel_before_provisional_waits_for_one(h: Harness, msg: Messages) -> None:
    """§9.1: no CANCEL goes downstream before a provisional; it goes when one arrives."""
    wire = _call(h, msg)
    actions = h.feed(msg.request("CANCEL"), PBX1)
    assert statuses(actions, PBX1) == [200]
    assert [m for m in parsed(actions, TRUNK1) if isinstance(m, Request)] == []
    later = h.feed(msg.response(wire, 180, "Ringing"), TRUNK1)
    assert only_request(later, TRUNK1).method == "CANCEL"


def test_cancel_without_a_transaction_gets_481(h: Harness, msg: Messages) -> None:
    """A CANCEL for nothing we know is answered 481."""
    assert statuses(h.feed(msg.request("CANCEL"), PBX1), PBX1) == [481]


def test_cancel_retransmission_absorbed(h: Harness, msg: Messages) -> None:
    """A retransmitted CANCEL gets the same 200 and no second downstream CANCEL."""
    wire = _call(h, msg)
    h.feed(msg.response(wire, 180, "Ringing"), TRUNK1)
    h.feed(msg.request("CANCEL"), PBX1)
    again = h.feed(msg.request("CANCEL"), PBX1)
    assert statuses(again, PBX1) == [200]
    assert sends(again, TRUNK1) == []


def test_timer_c_cancels_downstream_and_answers_408(msg: Messages) -> None:
    """§16.8: Timer C after a provisional: CANCEL downstream, 408 upstream."""
    h = make_harness(make_config(timers={"t1": 0.5, "t2": 4.0, "t4": 5.0, "timer_c": 60.0}))
    wire = _call(h, msg)
    h.feed(msg.response(wire, 180, "Ringing"), TRUNK1)
    assert sends(h.advance(59)) == []
    actions = h.advance(1.05)  # Timer C at 60 s; the CANCEL's own Timer E is due at 60.5
    assert only_request(actions, TRUNK1).method == "CANCEL"
    assert statuses(actions, PBX1) == [408]
    # The callee's late 487 is ACKed but not forwarded: the caller already has its final.
    late = h.feed(msg.response(wire, 487, "Request Terminated"), TRUNK1)
    assert only_request(late, TRUNK1).method == "ACK"
    assert statuses(late, PBX1) == []


def test_failover_to_backup_on_timeout(msg: Messages) -> None:
    """A new call whose trunk does not answer moves to the backup trunk, then 408."""
    h = make_harness()
    _call(h, msg)
    actions = h.advance(32.1)
    moved = only_request(actions, TRUNK2)
    assert moved.method == "INVITE" and len(moved.vias) == 2
    assert statuses(actions, PBX1) == []
    assert statuses(h.advance(32.1), PBX1) == [408]


def test_downstream_503_moves_to_backup_then_becomes_500(h: Harness, msg: Messages) -> None:
    """A 503 from the trunk tries the backup; a 503 from the backup goes up as 500 (§16.7
    step 6: the caller must not think the proxy itself is unavailable)."""
    wire = _call(h, msg)
    actions = h.feed(msg.response(wire, 503, "Service Unavailable"), TRUNK1)
    second = only_request(actions, TRUNK2)
    assert only_request(actions, TRUNK1).method == "ACK"
    final = h.feed(msg.response(second, 503, "Service Unavailable"), TRUNK2)
    assert statuses(final, PBX1) == [500]
