"""Assessment.upstream_headers: what the decision steps ask the core to add to every response
sent back towards the request's origin (docs/design.md; issue 4 §3, the annotate-mode
verification Reason of RFC 3326 / RFC 9410)."""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.core.actions import Action
from proxy.core.decision import Assessment, Continue, Decision, Origin, Reject
from proxy.sip.message import Request, Response
from tests.unit.core.core_helpers import (
    PBX1,
    TRUNK1,
    Harness,
    Messages,
    make_harness,
    parse,
    sends,
)

TRUNK_VIA = "SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK-op1-1"
REASON = 'SIP;cause=438;text="Invalid Identity Header"'


@dataclass
class UpstreamStep:
    """A verification-like step: lets the request through and asks for upstream headers."""

    headers: list[tuple[str, str]]
    answer: Decision = field(default_factory=Continue)
    name: str = "verification"

    def decide(
        self, request: Request, origin: Origin, assessment: Assessment, now: float
    ) -> Decision:
        """Record the headers on the assessment, then answer."""
        assessment.upstream_headers.extend(self.headers)
        return self.answer


def _responses(actions: list[Action], to: tuple[str, int]) -> list[Response]:
    """The responses sent to `to`, parsed."""
    return [m for m in (parse(s.data) for s in sends(actions, to)) if isinstance(m, Response)]


def _inbound(msg: Messages, headers: list[tuple[str, str]]) -> tuple[Harness, bytes, list[Action]]:
    """An inbound INVITE from trunk op1 through a step asking for `headers`; returns the
    harness, the INVITE as the PBX got it and the first actions."""
    h = make_harness(trunk_steps=[UpstreamStep(headers)])
    actions = h.feed(msg.request("INVITE", via=TRUNK_VIA), TRUNK1)
    forwarded = sends(actions, PBX1)
    assert len(forwarded) == 1
    return h, forwarded[0].data, list(actions)


def test_relayed_provisional_and_final_carry_the_headers(msg: Messages) -> None:
    """180 and 200 relayed to the trunk carry the Reason; the request to the PBX does not;
    the 100 Trying sent before the steps ran has none (documented)."""
    h, wire, first = _inbound(msg, [("Reason", REASON), ("X-Verified", "no")])
    (trying,) = _responses(first, TRUNK1)
    assert trying.status == 100 and trying.get("Reason") is None
    assert parse(wire).get("Reason") is None
    ringing = _responses(h.feed(msg.response(wire, 180, "Ringing"), PBX1), TRUNK1)
    ok = _responses(h.feed(msg.response(wire, 200, "OK"), PBX1), TRUNK1)
    for response in ringing + ok:
        assert response.get_all("Reason") == [REASON]
        assert response.get("X-Verified") == "no"
    assert [r.status for r in ringing + ok] == [180, 200]


def test_relayed_error_and_2xx_retransmission_carry_the_headers(msg: Messages) -> None:
    """A 486 from the PBX, and a 200 retransmitted after the transaction ended, too."""
    h, wire, _ = _inbound(msg, [("Reason", REASON)])
    (busy,) = _responses(h.feed(msg.response(wire, 486, "Busy Here"), PBX1), TRUNK1)
    assert busy.status == 486 and busy.get_all("Reason") == [REASON]

    h, wire, _ = _inbound(msg, [("Reason", REASON)])
    h.feed(msg.response(wire, 200, "OK"), PBX1)
    (again,) = _responses(h.feed(msg.response(wire, 200, "OK"), PBX1), TRUNK1)
    assert again.status == 200 and again.get_all("Reason") == [REASON]


def test_generated_responses_carry_the_headers_but_not_the_cancel_200(msg: Messages) -> None:
    """A CANCEL: its own 200 is not a response to the INVITE (no Reason); the 487 the
    INVITE ends with is (RFC 3261 §16.10)."""
    h, wire, _ = _inbound(msg, [("Reason", REASON)])
    h.feed(msg.response(wire, 180, "Ringing"), PBX1)
    cancel = msg.request("CANCEL", via=TRUNK_VIA)
    actions = h.feed(cancel, TRUNK1)
    (cancel_ok,) = _responses(actions, TRUNK1)
    assert cancel_ok.cseq.method == "CANCEL" and cancel_ok.get("Reason") is None
    cancel_out = [s for s in sends(actions, PBX1) if s.data.startswith(b"CANCEL")]
    h.feed(msg.response(cancel_out[0].data, 200, "OK"), PBX1)
    (terminated,) = _responses(h.feed(msg.response(wire, 487, "Request Terminated"), PBX1), TRUNK1)
    assert terminated.status == 487 and terminated.get_all("Reason") == [REASON]


def test_timeout_408_carries_the_headers(msg: Messages) -> None:
    """The 408 the core generates when the PBX never answers (Timer B, §16.8)."""
    h, _, _ = _inbound(msg, [("Reason", REASON)])
    finals = [r for r in _responses(h.advance(40), TRUNK1) if r.status >= 200]
    # The 408 and its Timer G retransmissions (§17.2.1): the same bytes each time.
    assert finals and {r.status for r in finals} == {408}
    assert all(r.get_all("Reason") == [REASON] for r in finals)


def test_one_reason_per_protocol(msg: Messages) -> None:
    """RFC 3326 §2: a relayed response's own SIP Reason wins over ours; a STIR one (RFC 9410)
    is a different protocol and is added beside it."""
    stir = 'STIR;cause=438;text="Invalid Identity Header"'
    h, wire, _ = _inbound(msg, [("Reason", REASON), ("Reason", stir)])
    theirs = 'SIP;cause=480;text="Nobody home"'
    response = msg.response(wire, 480, "Temporarily Unavailable", headers=[("Reason", theirs)])
    (relayed,) = _responses(h.feed(response, PBX1), TRUNK1)
    assert relayed.get_all("Reason") == [theirs, stir]


def test_reject_keeps_its_own_reason(msg: Messages) -> None:
    """A Reject's SIP Reason names the refusing rule; an upstream SIP Reason is not doubled."""
    step = UpstreamStep(
        [("Reason", REASON), ("X-Extra", "1")], Reject(403, "Forbidden", "no", "R1")
    )
    h = make_harness(trunk_steps=[step])
    responses = _responses(h.feed(msg.request("INVITE", via=TRUNK_VIA), TRUNK1), TRUNK1)
    final = responses[-1]
    assert final.status == 403
    assert final.get_all("Reason") == ['SIP;cause=403;text="R1: no"']
    assert final.get("X-Extra") == "1"


def test_no_upstream_headers_leaves_responses_alone(msg: Messages) -> None:
    """Without upstream headers nothing is added."""
    h, wire, _ = _inbound(msg, [])
    (ok,) = _responses(h.feed(msg.response(wire, 200, "OK"), PBX1), TRUNK1)
    assert ok.get("Reason") is None
