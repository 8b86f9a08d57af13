"""The decision steps (Continue / Reject / Defer) and graceful drain."""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.core.actions import FetchCertificate
from proxy.core.decision import Assessment, Continue, Decision, Defer, Origin, Reject
from proxy.core.events import CertificateFetched, DrainStarted
from proxy.sip.message import Request, Response
from tests.unit.core.core_helpers import (
    PBX1,
    TRUNK1,
    Messages,
    ended,
    make_harness,
    only_request,
    parse,
    sends,
    statuses,
)


@dataclass
class FakeStep:
    """A step answering from a script, recording what it saw."""

    name: str
    answers: list[Decision]
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)

    def decide(
        self, request: Request, origin: Origin, assessment: Assessment, now: float
    ) -> Decision:
        """Record the call; edit the request on Continue; answer the next scripted decision."""
        self.seen.append((request.method, origin.kind, origin.name))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Continue):
            request.add("X-Step", self.name)
            assessment.rules_fired.append(self.name)
        return answer


def test_continue_lets_the_request_through_with_edits(msg: Messages) -> None:
    """Steps run in order on initial requests and may edit them."""
    first, second = FakeStep("policy", [Continue()]), FakeStep("signing", [Continue()])
    h = make_harness(source_steps=[first, second])
    forwarded = only_request(h.feed(msg.request("INVITE"), PBX1), TRUNK1)
    assert forwarded.get_all("X-Step") == ["policy", "signing"]
    assert first.seen == [("INVITE", "source", "pbx1")]


def test_reject_answers_with_reason_and_warning(msg: Messages) -> None:
    """A Reject becomes the final response, naming the rule in Reason and Warning."""
    step = FakeStep("policy", [Reject(403, "Forbidden", "caller ID not allowed", "FR-CLI-1")])
    h = make_harness(source_steps=[step])
    actions = h.feed(msg.request("INVITE"), PBX1)
    assert sends(actions, TRUNK1) == []
    response = parse(sends(actions, PBX1)[-1].data)
    assert isinstance(response, Response) and response.status == 403
    assert response.get("Reason") == 'SIP;cause=403;text="FR-CLI-1: caller ID not allowed"'
    assert response.get("Warning") == '399 192.0.2.1 "FR-CLI-1: caller ID not allowed"'
    assert [e.status for e in ended(actions)] == [403]


def test_defer_fetches_once_per_url_and_resumes(msg: Messages) -> None:
    """Two calls waiting on one certificate give one FetchCertificate; when it arrives
    the step runs again and both calls go on."""
    url = "https://cert.example/sp.pem"
    step = FakeStep("verify", [Defer(url), Defer(url), Continue()])
    h = make_harness(source_steps=[step])
    first = h.feed(
        msg.request("INVITE", call_id="d1", via="SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKd1"), PBX1
    )
    second = h.feed(
        msg.request("INVITE", call_id="d2", via="SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKd2"), PBX1
    )
    fetches = [a for a in first + second if isinstance(a, FetchCertificate)]
    assert fetches == [FetchCertificate(url)]
    assert sends(first + second, TRUNK1) == []
    resumed = h.event(CertificateFetched(url, True))
    assert len(sends(resumed, TRUNK1)) == 2
    assert len(step.seen) == 4


def test_deferred_request_times_out_with_504(msg: Messages) -> None:
    """A certificate that never comes: the parked request is answered 504."""
    step = FakeStep("verify", [Defer("https://cert.example/slow.pem")])
    h = make_harness(source_steps=[step])
    h.feed(msg.request("INVITE"), PBX1)
    assert statuses(h.advance(9), PBX1) == []
    assert statuses(h.advance(1.2), PBX1) == [504]


def test_step_deferring_again_after_fetch_gets_500(msg: Messages) -> None:
    """A step that still defers after its fetch completed does not loop forever."""
    url = "https://cert.example/broken.pem"
    step = FakeStep("verify", [Defer(url)])
    h = make_harness(source_steps=[step])
    h.feed(msg.request("INVITE"), PBX1)
    actions = h.event(CertificateFetched(url, False, "connection refused"))
    assert statuses(actions, PBX1) == [500]


def test_cancel_while_parked_answers_487(msg: Messages) -> None:
    """A CANCEL for a call waiting on a certificate ends it with 487, nothing forwarded."""
    url = "https://cert.example/p.pem"
    step = FakeStep("verify", [Defer(url), Continue()])
    h = make_harness(source_steps=[step])
    h.feed(msg.request("INVITE"), PBX1)
    actions = h.feed(msg.request("CANCEL"), PBX1)
    assert sorted(statuses(actions, PBX1)) == [200, 487]
    assert sends(h.event(CertificateFetched(url, True)), TRUNK1) == []


def test_steps_skip_in_dialog_requests_and_use_the_origin(msg: Messages) -> None:
    """Source steps do not run on in-dialog requests; trunk steps run for trunk origins."""
    source_step = FakeStep("policy", [Continue()])
    trunk_step = FakeStep("verification", [Continue()])
    h = make_harness(source_steps=[source_step], trunk_steps=[trunk_step])
    bye = msg.request("BYE", uri="sip:x@198.51.100.10", to_tag="t1")
    assert len(sends(h.feed(bye, PBX1), TRUNK1)) == 1
    assert source_step.seen == []
    inbound = msg.request("INVITE", via="SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKin")
    h.feed(inbound, TRUNK1)
    assert trunk_step.seen == [("INVITE", "trunk", "op1")] and source_step.seen == []


def test_drain_refuses_new_calls_but_keeps_dialogs(msg: Messages) -> None:
    """After DrainStarted a new INVITE gets 503 + Retry-After; a BYE still goes through."""
    h = make_harness()
    h.event(DrainStarted(h.now + 30))
    actions = h.feed(msg.request("INVITE"), PBX1)
    assert statuses(actions, PBX1) == [100, 503]
    response = parse(sends(actions, PBX1)[-1].data)
    assert response.get("Retry-After") == "30"
    bye = msg.request("BYE", uri="sip:x@198.51.100.10", to_tag="t1", call_id="old-call")
    assert len(sends(h.feed(bye, PBX1), TRUNK1)) == 1
    assert h.core.busy()
