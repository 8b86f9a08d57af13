"""Client transactions: RFC 3261 Figs. 5 and 6 with RFC 6026's Accepted state."""

from __future__ import annotations

import pytest

from proxy.sip.message import Request, parse_message
from proxy.transaction import (
    ClientInviteState,
    ClientNonInviteState,
    InvalidTransition,
    ResponseReceived,
    TimedOut,
    TimerCFired,
    Transmit,
    TransportFailed,
)
from tests.unit.transaction.tx_helpers import (
    BRANCH,
    TCP,
    UDP,
    make_clock,
    request,
    request_bytes,
    response,
    transmits,
)


def _invite(clock_kw: dict[str, float] | None = None, destination=UDP):  # type: ignore[no-untyped-def]
    clock = make_clock(**(clock_kw or {}))
    req = request("INVITE")
    tx, out = clock.manager.create_client(
        "INVITE", request_bytes("INVITE"), BRANCH, destination, clock.now, req
    )
    return clock, tx, out


def test_invite_sent_once_on_start() -> None:
    """Starting the transaction sends the request exactly once, in Calling."""
    _, tx, out = _invite()
    assert transmits(out) == [request_bytes("INVITE")]
    assert tx.state is ClientInviteState.CALLING


def test_timer_a_doubles_until_timer_b_over_udp() -> None:
    """Timer A retransmits at T1, 2T1, 4T1... and Timer B ends the transaction at 64*T1."""
    clock, tx, _ = _invite()
    start = clock.now
    clock.advance(40)
    times = [round(t - start, 3) for t, o in clock.fired if isinstance(o, Transmit)]
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    timeouts = [round(t - start, 3) for t, o in clock.fired if isinstance(o, TimedOut)]
    assert timeouts == [32.0]
    assert tx.terminated and clock.manager.client_count == 0


def test_no_retransmission_over_tcp_but_timer_b() -> None:
    """Over a reliable transport Timer A is never armed; Timer B still fires."""
    clock, _tx, _ = _invite(destination=TCP)
    outputs = clock.advance(40)
    assert transmits(outputs) == []
    assert [type(o) for o in outputs] == [TimedOut]


def test_t1_is_configurable() -> None:
    """A smaller T1 makes both the retransmissions and Timer B faster."""
    clock, _, _ = _invite({"t1": 0.1})
    start = clock.now
    clock.advance(10)
    timeouts = [round(t - start, 3) for t, o in clock.fired if isinstance(o, TimedOut)]
    assert timeouts == [6.4]


def test_provisional_stops_retransmissions_and_goes_to_tu() -> None:
    """A 180 moves to Proceeding, is delivered, and stops Timers A and B."""
    clock, tx, _ = _invite()
    out = tx.receive_response(response(180), clock.now)
    assert [type(o) for o in out] == [ResponseReceived]
    assert tx.state is ClientInviteState.PROCEEDING
    assert clock.advance(60) == []


def test_timer_c_after_provisional_reports_to_tu() -> None:
    """Timer C (reset by each provisional) fires in Proceeding and asks for a CANCEL."""
    clock, tx, _ = _invite({"timer_c": 100.0})
    clock.advance(10)
    tx.receive_response(response(180), clock.now)  # resets Timer C to now + 100
    assert clock.advance(99) == []
    out = clock.advance(2)
    assert [type(o) for o in out] == [TimerCFired]
    assert tx.state is ClientInviteState.PROCEEDING


def test_timer_c_before_provisional_acts_as_timeout() -> None:
    """§16.8: Timer C in Calling behaves as if a 408 came in."""
    clock, tx, _ = _invite({"timer_c": 10.0})
    out = clock.advance(11)
    assert [type(o) for o in out if not isinstance(o, Transmit)] == [TimedOut]
    assert tx.terminated


def test_non_2xx_final_is_acked_hop_by_hop() -> None:
    """A 486 is ACKed by the transaction (§17.1.1.3) with the INVITE's branch and To tag."""
    clock, tx, _ = _invite()
    out = tx.receive_response(response(486), clock.now)
    (ack_bytes,) = transmits(out)
    ack = parse_message(ack_bytes)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.top_via.branch == BRANCH and ack.cseq.seq == 1 and ack.cseq.method == "ACK"
    assert ack.to.tag == "b1" and ack.uri_text == "sip:bob@198.51.100.10"
    assert [type(o) for o in out] == [Transmit, ResponseReceived]
    assert tx.state is ClientInviteState.COMPLETED


def test_retransmitted_final_is_reacked_not_delivered() -> None:
    """In Completed a retransmitted 486 gets the same ACK again and is absorbed."""
    clock, tx, _ = _invite()
    first = transmits(tx.receive_response(response(486), clock.now))
    again = tx.receive_response(response(486), clock.now + 1)
    assert transmits(again) == first
    assert not any(isinstance(o, ResponseReceived) for o in again)


def test_timer_d_over_udp_and_zero_over_tcp() -> None:
    """Timer D keeps Completed 32 s on UDP and 0 s on TCP."""
    clock, tx, _ = _invite()
    tx.receive_response(response(486), clock.now)
    clock.advance(31.9)
    assert tx.state is ClientInviteState.COMPLETED
    clock.advance(0.2)
    assert tx.terminated
    clock, tx, _ = _invite(destination=TCP)
    tx.receive_response(response(486), clock.now)
    assert tx.terminated


def test_2xx_and_its_retransmissions_reach_the_tu() -> None:
    """RFC 6026: Accepted passes every 2xx up, then Timer M ends the transaction."""
    clock, tx, _ = _invite()
    first = tx.receive_response(response(200), clock.now)
    second = tx.receive_response(response(200), clock.now + 1)
    assert [type(o) for o in first] == [ResponseReceived]
    assert [type(o) for o in second] == [ResponseReceived]
    assert transmits(first + second) == []  # a 2xx is never ACKed by the transaction
    assert tx.state is ClientInviteState.ACCEPTED
    clock.advance(32.1)
    assert tx.terminated


def test_cancel_sent_arms_the_guard() -> None:
    """§9.1: with no final 64*T1 after the CANCEL, the INVITE transaction gives up."""
    clock, tx, _ = _invite()
    tx.receive_response(response(180), clock.now)
    tx.cancel_sent(clock.now)
    out = clock.advance(32.1)
    assert [type(o) for o in out] == [TimedOut]


def test_cancel_before_provisional_is_refused() -> None:
    """A CANCEL may not be sent before a provisional (§9.1): the table refuses it."""
    clock, tx, _ = _invite()
    with pytest.raises(InvalidTransition):
        tx.cancel_sent(clock.now)


def test_build_cancel_copies_the_invite() -> None:
    """The CANCEL has the INVITE's Request-URI, branch, Call-ID and CSeq number."""
    _, tx, _ = _invite()
    cancel = parse_message(tx.build_cancel())
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    assert cancel.top_via.branch == BRANCH and cancel.cseq.method == "CANCEL"
    assert cancel.uri_text == "sip:bob@198.51.100.10" and cancel.to.tag is None


def test_transport_error_is_reported() -> None:
    """A transport error in Calling terminates and reports (§17.1.4)."""
    clock, tx, _ = _invite()
    out = tx.transport_error(clock.now)
    assert [type(o) for o in out] == [TransportFailed] and tx.terminated


def _non_invite(destination=UDP):  # type: ignore[no-untyped-def]
    clock = make_clock()
    tx, out = clock.manager.create_client(
        "OPTIONS", request_bytes("OPTIONS"), BRANCH, destination, clock.now
    )
    return clock, tx, out


def test_timer_e_doubles_capped_at_t2_then_timer_f() -> None:
    """Timer E retransmits at 0.5, 1.5, 3.5, 7.5, then every T2; Timer F at 64*T1."""
    clock, _tx, _ = _non_invite()
    start = clock.now
    clock.advance(40)
    times = [round(t - start, 3) for t, o in clock.fired if isinstance(o, Transmit)]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [round(t - start, 3) for t, o in clock.fired if isinstance(o, TimedOut)] == [32.0]


def test_timer_e_is_t2_in_proceeding() -> None:
    """After a provisional, Timer E retransmits every T2 (§17.1.2.2)."""
    clock, tx, _ = _non_invite()
    start = clock.now
    clock.advance(0.6)  # first retransmission at 0.5, next due at 1.5
    tx.receive_response(response(180, method="OPTIONS"), clock.now)
    assert tx.state is ClientNonInviteState.PROCEEDING
    clock.advance(10)
    times = [round(t - start, 3) for t, o in clock.fired if isinstance(o, Transmit)]
    assert times == [0.5, 1.5, 5.5, 9.5]


def test_non_invite_final_then_timer_k() -> None:
    """A final goes up once; Timer K (T4 on UDP) absorbs retransmissions, then ends."""
    clock, tx, _ = _non_invite()
    out = tx.receive_response(response(200, method="OPTIONS"), clock.now)
    assert [type(o) for o in out] == [ResponseReceived]
    assert tx.receive_response(response(200, method="OPTIONS"), clock.now) == []
    clock.advance(4.9)
    assert tx.state is ClientNonInviteState.COMPLETED
    clock.advance(0.2)
    assert tx.terminated


def test_non_invite_over_tcp_ends_at_once_and_never_retransmits() -> None:
    """Timer K is zero and Timer E unused over reliable transports."""
    clock, tx, _ = _non_invite(TCP)
    assert transmits(clock.advance(10)) == []
    tx.receive_response(response(200, method="OPTIONS"), clock.now)
    assert tx.terminated
