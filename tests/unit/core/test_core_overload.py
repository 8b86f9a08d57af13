"""Overload shedding: a worker busy nearly all the time answers new INVITEs 503 +
Retry-After instead of queueing them until retransmissions snowball."""

from __future__ import annotations

from proxy.core.overload import LoadGauge
from tests.unit.core.core_helpers import (
    BASE_CONFIG,
    PBX1,
    TRUNK1,
    Harness,
    Messages,
    make_config,
    make_harness,
    parsed,
    sends,
    statuses,
)

VIA = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-"


def busy_for(h: Harness, seconds: float, fraction: float) -> None:
    """Report `fraction` of each 10 ms as busy over `seconds`, ending at the fake now."""
    start = h.now
    steps = round(seconds / 0.01)
    for i in range(steps):
        t = start + i * 0.01
        h.core.record_busy(t, t + 0.01 * fraction)
    h.now = start + seconds


def test_gauge_trips_on_a_back_to_back_stretch_and_clears_on_idle() -> None:
    """Overloaded once events run back to back for `period`; the first idle gap clears it."""
    gauge = LoadGauge(gap=0.001, period=0.2)
    t = 0.0
    for _ in range(20):  # 200 ms less 0.1 back to back (gaps of 0.1 ms): not yet
        assert gauge.record(t, t + 0.0099) is None
        t += 0.01
    assert gauge.record(t, t + 0.0099) is True and gauge.overloaded
    assert gauge.stretch >= 0.2
    t += 0.0099 + 0.005  # 5 ms idle: the queue drained
    assert gauge.record(t, t + 0.001) is False and not gauge.overloaded


def test_gauge_never_trips_with_idle_gaps_between_events() -> None:
    """90 % busy with a 1 ms idle gap every 10 ms, for 10 s: never overloaded."""
    gauge = LoadGauge(gap=0.0005, period=0.2)
    for i in range(1000):
        t = i * 0.01
        gauge.record(t, t + 0.009)
        assert not gauge.overloaded


def test_overloaded_worker_answers_new_invite_503_with_retry_after(
    h: Harness, msg: Messages
) -> None:
    """New INVITEs get 503 Overloaded + Retry-After, nothing goes to the trunk, and the
    503 is retransmitted to an INVITE retransmission (the transaction is stateful)."""
    busy_for(h, h.core.load.period, 1.0)
    assert h.core.load.overloaded
    invite = msg.request("INVITE")
    actions = h.feed(invite, PBX1)
    assert statuses(actions, PBX1) == [503]
    assert sends(actions, TRUNK1) == []
    (reply,) = parsed(actions, PBX1)
    assert reply.reason == "Overloaded"  # type: ignore[union-attr]
    assert reply.get("Retry-After") == "30"
    assert statuses(h.feed(invite, PBX1), PBX1) == [503]


def test_overload_spares_in_dialog_requests_and_clears(h: Harness, msg: Messages) -> None:
    """A BYE of an established call is still forwarded while shedding; once the worker
    is idle again new INVITEs go through."""
    busy_for(h, h.core.load.period, 1.0)
    route = "<sip:192.0.2.1:5060;transport=udp;lr>"
    bye = msg.request(
        "BYE",
        uri="sip:uas@198.51.100.10:5060",
        via="SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-uac-bye",
        cseq=2,
        to_tag="uas1",
        headers=[("Route", route)],
    )
    assert len(sends(h.feed(bye, PBX1), TRUNK1)) == 1
    busy_for(h, 0.1, 0.1)
    assert not h.core.load.overloaded
    actions = h.feed(msg.request("INVITE"), PBX1)
    assert statuses(actions, PBX1) == [100]
    assert len(sends(actions, TRUNK1)) == 1


def test_busy_but_not_saturated_worker_does_not_shed(h: Harness, msg: Messages) -> None:
    """At 80 % busy (idle 2 ms in every 10) the worker keeps up: calls are forwarded."""
    busy_for(h, 2.0, 0.8)
    assert not h.core.load.overloaded
    assert len(sends(h.feed(msg.request("INVITE"), PBX1), TRUNK1)) == 1


def test_invite_retransmissions_we_caused_trip_shedding(h: Harness, msg: Messages) -> None:
    """INVITEs retransmitted because our answers came later than T1 (here: 12 INVITEs, each
    retransmitted, in one second) make the next second's new INVITEs answered 503."""
    for n in range(12):
        invite = msg.request(
            "INVITE",
            call_id=f"late-{n}@10.0.0.5",
            via=f"SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-late-{n}",
        )
        h.feed(invite, PBX1)
        h.now += 0.04
        assert statuses(h.feed(invite, PBX1), PBX1) == [100]  # re-answered, not shed
    assert not h.core.load.overloaded  # counted, judged when the window closes
    h.now += 0.6
    actions = h.feed(msg.request("INVITE", call_id="next@10.0.0.5", via=VIA + "next"), PBX1)
    assert h.core.load.overloaded
    assert statuses(actions, PBX1) == [503]
    h.now += 1.1  # a quiet window clears it
    actions = h.feed(msg.request("INVITE", call_id="later@10.0.0.5", via=VIA + "later"), PBX1)
    assert not h.core.load.overloaded
    assert statuses(actions, PBX1) == [100]


def test_a_few_retransmissions_do_not_shed(h: Harness, msg: Messages) -> None:
    """Nine retransmissions in a window (a lossy link) stay below the threshold."""
    for n in range(9):
        invite = msg.request(
            "INVITE",
            call_id=f"lossy-{n}@10.0.0.5",
            via=f"SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-lossy-{n}",
        )
        h.feed(invite, PBX1)
        h.feed(invite, PBX1)
        h.now += 0.1
    h.now += 0.2
    assert statuses(
        h.feed(msg.request("INVITE", call_id="ok@10.0.0.5", via=VIA + "ok"), PBX1), PBX1
    ) == [100]


def test_overload_protection_can_be_turned_off(msg: Messages) -> None:
    """With routing.overload_protection false a saturated worker still forwards INVITEs."""
    routing = dict(BASE_CONFIG.get("routing", {}), overload_protection=False)
    h = make_harness(make_config(routing=routing))
    busy_for(h, h.core.load.period, 1.0)
    assert h.core.load.overloaded
    actions = h.feed(msg.request("INVITE"), PBX1)
    assert 503 not in statuses(actions, PBX1)
    assert len(sends(actions, TRUNK1)) == 1
