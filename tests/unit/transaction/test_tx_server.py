"""Server transactions (RFC 3261 Figs. 7 and 8, RFC 6026) and transaction matching."""

from __future__ import annotations

import pytest

from proxy.transaction import (
    AckReceived,
    AckTimedOut,
    DeadlineHeap,
    ServerInviteState,
    ServerNonInviteState,
    TimerName,
    TimerSettings,
    Transmit,
    server_key,
)
from tests.unit.transaction.tx_helpers import (
    BRANCH,
    TCP,
    UDP,
    make_clock,
    request,
    response,
    transmits,
)


def _server(method: str = "INVITE", destination=UDP):  # type: ignore[no-untyped-def]
    clock = make_clock()
    tx = clock.manager.create_server(request(method), destination, clock.now)
    return clock, tx


def test_invite_retransmission_gets_the_last_provisional() -> None:
    """§17.2.1: in Proceeding a retransmitted INVITE is answered with the latest 1xx."""
    clock, tx = _server()
    assert tx.receive_request(request("INVITE"), clock.now) == []  # nothing sent yet
    tx.respond(100, b"100", clock.now)
    tx.respond(180, b"180", clock.now)
    assert transmits(tx.receive_request(request("INVITE"), clock.now)) == [b"180"]


def test_non_2xx_final_retransmitted_on_timer_g_until_ack() -> None:
    """Timer G resends the 486 at 0.5, 1.5, 3.5, 7.5, 11.5...; the ACK stops it."""
    clock, tx = _server()
    start = clock.now
    assert transmits(tx.respond(486, b"486", clock.now)) == [b"486"]
    clock.advance(12)
    times = [round(t - start, 3) for t, o in clock.fired if isinstance(o, Transmit)]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert tx.receive_request(request("ACK", to_tag="b1"), clock.now) == []
    assert tx.state is ServerInviteState.CONFIRMED
    assert transmits(clock.advance(4)) == []


def test_ack_absorbed_then_timer_i() -> None:
    """Confirmed absorbs ACK retransmissions and ends after T4 on UDP."""
    clock, tx = _server()
    tx.respond(486, b"486", clock.now)
    tx.receive_request(request("ACK"), clock.now)
    assert tx.receive_request(request("ACK"), clock.now) == []
    clock.advance(5.1)
    assert tx.terminated and clock.manager.server_count == 0


def test_timer_h_reports_a_missing_ack() -> None:
    """Timer H (64*T1) ends Completed when no ACK came."""
    clock, tx = _server()
    tx.respond(486, b"486", clock.now)
    out = clock.advance(33)
    assert any(isinstance(o, AckTimedOut) for o in out) and tx.terminated


def test_no_timer_g_over_tcp_and_confirmed_ends_at_once() -> None:
    """Over TCP the final is not retransmitted and Timer I is zero."""
    clock, tx = _server(destination=TCP)
    tx.respond(486, b"486", clock.now)
    assert transmits(clock.advance(10)) == []
    tx.receive_request(request("ACK"), clock.now)
    assert tx.terminated


def test_retransmitted_invite_in_completed_gets_the_final() -> None:
    """In Completed a retransmitted INVITE is answered with the final again."""
    clock, tx = _server()
    tx.respond(486, b"486", clock.now)
    assert transmits(tx.receive_request(request("INVITE"), clock.now)) == [b"486"]


def test_2xx_goes_to_accepted_and_is_never_retransmitted_by_us() -> None:
    """RFC 6026: a 2xx moves to Accepted, INVITE retransmissions are absorbed, 2xx from the
    TU pass through, ACKs go to the TU, and Timer L ends it."""
    clock, tx = _server()
    assert transmits(tx.respond(200, b"200", clock.now)) == [b"200"]
    assert tx.state is ServerInviteState.ACCEPTED
    assert tx.receive_request(request("INVITE"), clock.now) == []
    assert transmits(clock.advance(10)) == []
    assert transmits(tx.respond(200, b"200-again", clock.now)) == [b"200-again"]
    assert [type(o) for o in tx.receive_request(request("ACK"), clock.now)] == [AckReceived]
    clock.advance(23)
    assert tx.terminated


def test_2xx_after_non_2xx_final_is_still_forwarded() -> None:
    """§16.7 step 10: a late 2xx goes up even after a non-2xx final."""
    clock, tx = _server()
    tx.respond(487, b"487", clock.now)
    assert transmits(tx.respond(200, b"200", clock.now)) == [b"200"]
    assert transmits(tx.receive_request(request("INVITE"), clock.now)) == [b"487"]


def test_non_invite_trying_absorbs_then_completed_resends() -> None:
    """Fig. 8: Trying absorbs retransmissions; Completed resends the final until Timer J."""
    clock, tx = _server("OPTIONS")
    assert tx.receive_request(request("OPTIONS"), clock.now) == []
    tx.respond(200, b"200", clock.now)
    assert tx.state is ServerNonInviteState.COMPLETED
    assert transmits(tx.receive_request(request("OPTIONS"), clock.now)) == [b"200"]
    assert transmits(tx.respond(500, b"500", clock.now)) == []  # a late final is ignored
    clock.advance(31.9)
    assert not tx.terminated
    clock.advance(0.2)
    assert tx.terminated


def test_non_invite_over_tcp_ends_with_its_final() -> None:
    """Timer J is zero over reliable transports."""
    clock, tx = _server("MESSAGE", TCP)
    tx.respond(200, b"200", clock.now)
    assert tx.terminated


def test_ack_and_cancel_match_the_invite_server_transaction() -> None:
    """§17.2.3: ACK matches the INVITE's transaction, CANCEL finds it but has its own."""
    clock, tx = _server()
    manager = clock.manager
    assert manager.find_server(request("ACK", to_tag="x")) is tx
    assert manager.find_server(request("CANCEL")) is None
    assert manager.find_invite_server(request("CANCEL")) is tx


def test_matching_needs_the_same_sent_by_and_branch() -> None:
    """A different sent-by or branch is a different transaction."""
    clock, _ = _server()
    manager = clock.manager
    assert manager.find_server(request("INVITE", sent_by="192.0.2.9:5060")) is None
    assert manager.find_server(request("INVITE", branch="z9hG4bKother")) is None


def test_rfc2543_requests_match_without_a_magic_cookie() -> None:
    """Without z9hG4bK the fallback key (Request-URI, tags, Call-ID, CSeq, sent-by) works."""
    clock = make_clock()
    invite = request("INVITE", branch="old2543")
    tx = clock.manager.create_server(invite, UDP, clock.now)
    assert server_key(invite)[0] == "2543"
    assert clock.manager.find_server(request("ACK", branch="old2543", to_tag="t")) is tx
    assert clock.manager.find_server(request("INVITE", branch="old2543", call_id="x@y")) is None


def test_client_matching_uses_branch_and_cseq_method() -> None:
    """§17.1.3: a CANCEL response does not match the INVITE client transaction."""
    clock = make_clock()
    manager = clock.manager
    invite_tx, _ = manager.create_client("INVITE", b"i", BRANCH, UDP, clock.now, request())
    cancel_tx, _ = manager.create_client("CANCEL", b"c", BRANCH, UDP, clock.now)
    assert manager.find_client(response(180)) is invite_tx
    assert manager.find_client(response(200, method="CANCEL")) is cancel_tx
    assert manager.find_client(response(180, branch="z9hG4bKnope")) is None


class _Owner:
    def __init__(self) -> None:
        self.armed: dict[str, int] = {}


def test_deadline_heap_skips_cancelled_and_rearmed_timers() -> None:
    """Cancelled or re-armed entries never fire; live ones fire in order."""
    heap: DeadlineHeap[str] = DeadlineHeap()
    a, b = _Owner(), _Owner()
    heap.arm(a, "x", 10.0)
    heap.arm(b, "y", 5.0)
    heap.arm(a, "x", 20.0)  # re-armed: the entry at 10 is stale
    DeadlineHeap.cancel(b, "y")
    assert heap.next_deadline() == 20.0
    assert heap.pop_due(19.0) is None
    assert heap.pop_due(20.0) == (a, "x")
    assert heap.next_deadline() is None


@pytest.mark.parametrize(
    ("name", "reliable", "expected"),
    [
        (TimerName.A, False, 0.5),
        (TimerName.B, True, 32.0),
        (TimerName.D, False, 32.0),
        (TimerName.D, True, 0.0),
        (TimerName.I, False, 5.0),
        (TimerName.J, False, 32.0),
        (TimerName.J, True, 0.0),
        (TimerName.K, True, 0.0),
        (TimerName.C, True, 180.0),
        (TimerName.M, True, 32.0),
    ],
)
def test_timer_durations_follow_table_4(name: TimerName, reliable: bool, expected: float) -> None:
    """Durations are RFC 3261 Table 4's (and RFC 6026's) for the default T1/T2/T4."""
    assert TimerSettings().duration(name, reliable) == expected


def test_final_response_status_is_kept_for_logging() -> None:
    """The first final status is remembered; a 100 is not a final."""
    clock, tx = _server()
    tx.respond(100, b"100", clock.now)
    assert not tx.answered
    tx.respond(486, b"486", clock.now)
    tx.respond(200, b"200", clock.now)
    assert tx.final_status == 486
