"""Trunk monitoring with OPTIONS pings, failover to the backup, 503 when none is up."""

from __future__ import annotations

from proxy.core.actions import TrunkStateChanged
from proxy.core.events import ConfigReloaded
from proxy.sip.message import Request
from tests.unit.core.core_helpers import (
    BASE_CONFIG,
    PBX1,
    TRUNK1,
    TRUNK2,
    Harness,
    Messages,
    make_config,
    make_harness,
    only_request,
    parse,
    sends,
    statuses,
)


def _pings(actions: list, to: tuple[str, int]) -> list[Request]:  # type: ignore[type-arg]
    requests = [parse(s.data) for s in sends(actions, to, pings=True)]
    return [r for r in requests if isinstance(r, Request) and r.method == "OPTIONS"]


def _changes(actions: list) -> list[tuple[str, bool]]:  # type: ignore[type-arg]
    return [(a.trunk, a.up) for a in actions if isinstance(a, TrunkStateChanged)]


def _take_down(h: Harness, name: str = "op1") -> list:  # type: ignore[type-arg]
    """Let the pings to TRUNK1 (or both) time out until the trunk is down."""
    actions = h.advance(30 + 30 + 32.5)  # two pings (options_failures: 2), each 64*T1
    assert not h.core.trunk_up(name)
    return actions


def test_each_trunk_is_pinged_every_interval(h: Harness) -> None:
    """An OPTIONS goes to each trunk every options_interval (30 s in the lab config)."""
    assert _pings(h.advance(29), TRUNK1) == []
    actions = h.advance(1.1)
    (ping,) = _pings(actions, TRUNK1)
    assert ping.uri_text == "sip:198.51.100.10:5060;transport=udp"
    assert len(_pings(actions, TRUNK2)) == 1
    # Each ping is a non-INVITE client transaction: Timer E retransmits it.
    assert len(_pings(h.advance(0.6), TRUNK1)) == 1


def test_trunk_goes_down_after_failures_and_back_up(h: Harness, msg: Messages) -> None:
    """options_failures timeouts in a row take a trunk down; a response brings it up."""
    actions = h.advance(62.6)  # first ping at 30 timed out at 62
    assert h.core.trunk_up("op1")
    actions = h.advance(30.0)  # second ping at 60 timed out at 92
    assert ("op1", False) in _changes(actions)
    assert not h.core.trunk_up("op1")
    actions = h.advance(30.0)  # the ping at 120 is due now
    ping = _pings(actions, TRUNK1)[-1]  # the newest ping, still in flight
    back = h.feed(msg.response(ping, 200, "OK", contact=None), TRUNK1)
    assert _changes(back) == [("op1", True)] and h.core.trunk_up("op1")


def test_any_final_response_counts_as_alive(h: Harness, msg: Messages) -> None:
    """A 404 to OPTIONS still proves the trunk is there."""
    _take_down(h)
    ping = _pings(h.advance(30.0), TRUNK1)[-1]
    back = h.feed(msg.response(ping, 404, "Not Found"), TRUNK1)
    assert ("op1", True) in _changes(back)


def test_backup_takes_over_when_primary_is_down(h: Harness, msg: Messages) -> None:
    """With op1 down, a new call from pbx1 goes to op2."""
    _take_down_only_op1(h, msg)
    actions = h.feed(msg.request("INVITE", call_id="after-down"), PBX1)
    assert only_request(actions, TRUNK2).method == "INVITE"
    assert sends(actions, TRUNK1) == []


def _take_down_only_op1(h: Harness, msg: Messages) -> None:
    """Time out op1's pings while op2 answers its own."""
    for _ in range(4):
        actions = h.advance(30.0)
        for ping in _pings(actions, TRUNK2):
            h.feed(msg.response(ping, 200, "OK", contact=None), TRUNK2)
    h.advance(5)
    assert not h.core.trunk_up("op1") and h.core.trunk_up("op2")


def test_503_with_retry_after_when_no_trunk_is_up(h: Harness, msg: Messages) -> None:
    """No trunk up: the call is answered 503 with Retry-After (routing.retry_after)."""
    _take_down(h)
    assert not h.core.trunk_up("op2")
    actions = h.feed(msg.request("INVITE", call_id="all-down"), PBX1)
    assert statuses(actions, PBX1) == [100, 503]
    response = parse(sends(actions, PBX1)[-1].data)
    assert response.get("Retry-After") == "30"
    assert sends(actions, TRUNK1) == [] and sends(actions, TRUNK2) == []


def test_reload_keeps_health_and_drops_removed_trunks(h: Harness) -> None:
    """After a reload a trunk keeps its state by name; a removed trunk is no longer pinged."""
    _take_down(h)
    trunks = [dict(BASE_CONFIG["trunks"][0])]
    trunks[0]["backup"] = None
    h.event(ConfigReloaded(make_config(trunks=trunks)))
    assert h.core.trunk_states() == {"op1": False}
    h.advance(33)  # pings already in flight run to their end
    assert _pings(h.advance(60), TRUNK2) == []
    assert len(_pings(h.advance(30), TRUNK1)) >= 1


def test_retry_after_zero_leaves_the_header_out(msg: Messages) -> None:
    """routing.retry_after: 0 answers 503 without a Retry-After header."""
    h = make_harness(make_config(routing={"retry_after": 0}))
    _take_down(h)
    actions = h.feed(msg.request("INVITE", call_id="all-down-0"), PBX1)
    response = parse(sends(actions, PBX1)[-1].data)
    assert response.status == 503 and response.get("Retry-After") is None
