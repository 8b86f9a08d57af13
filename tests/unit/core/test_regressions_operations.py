"""Regressions found by the operations tests (issue 5)."""

from __future__ import annotations

from tests.unit.core.core_helpers import PBX1, TRUNK1, Harness, Messages, only_request, statuses


def test_busy_ends_when_every_request_has_its_final_answer(h: Harness, msg: Messages) -> None:
    """busy() counts requests awaiting a final answer, not transactions lingering for timers."""
    invite = msg.request("INVITE")
    forwarded = only_request(h.feed(invite, PBX1), TRUNK1)
    assert h.core.busy()
    assert 200 in statuses(h.feed(msg.response(forwarded, 200), TRUNK1), PBX1)
    # The INVITE server transaction now sits in Accepted until Timer L (64*T1): nothing waits.
    assert not h.core.busy()
    bye = msg.request(
        "BYE",
        uri="sip:uas@198.51.100.10:5060",
        to_tag="uas1",
        cseq=2,
        via="SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-uac-bye",
    )
    forwarded_bye = only_request(h.feed(bye, PBX1), TRUNK1)
    assert h.core.busy()
    assert statuses(h.feed(msg.response(forwarded_bye, 200), TRUNK1), PBX1) == [200]
    # The BYE server transaction lingers in Completed until Timer J: still not busy.
    assert not h.core.busy()
