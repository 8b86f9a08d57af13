"""PolicyStep: Assessment, Reject/Continue, audit and history through the RequestStep API."""

from __future__ import annotations

from pathlib import Path

from proxy.core.decision import Assessment, Continue, Origin, Reject
from proxy.policy.audit import AuditLog, entries
from proxy.policy.numbers import FlowHistory
from proxy.policy.step import InboundMessageCounter, PolicyStep
from proxy.sip.message import Header, Request
from tests.unit.policy.policy_fixtures import NOW, data, source

ORIGIN = Origin("source", "dialer", "udp", ("10.0.0.1", 5060))


def invite(from_value: str, *extra: tuple[str, str], method: str = "INVITE") -> Request:
    """A request from the dialer."""
    headers = [
        ("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1"),
        ("From", from_value + ";tag=1"),
        ("To", "<sip:+33299000001@op>"),
        ("Call-ID", "call-1"),
        ("CSeq", f"1 {method}"),
        *extra,
    ]
    return Request(method, "sip:+33299000001@op", [Header(n, v) for n, v in headers])


def step(tmp_path: Path, **src: object) -> PolicyStep:
    """A step over the fixtures with an audit log in `tmp_path`."""
    history = FlowHistory(None)
    return PolicyStep(
        settings=data().settings,
        sources={"dialer": source(**src)},
        data=data(history=history),
        audit=AuditLog(tmp_path / "audit.sqlite3"),
        history=history,
    )


def test_allowed_call_fills_assessment(tmp_path: Path):
    """An NPV on the list continues; the assessment says own, the customer, no rules."""
    s = step(tmp_path)
    assessment = Assessment()
    assert s.decide(invite("<sip:+33162000001@pbx>"), ORIGIN, assessment, NOW) == Continue()
    assert assessment.customer == "callco"
    assert assessment.caller_e164 == "+33162000001"
    assert assessment.number_status == "own"
    assert assessment.rules_fired == []


def test_rejected_call_names_the_rule(tmp_path: Path):
    """A mobile caller gets the configured status and the rule id."""
    s = step(tmp_path, reject_status=603)
    decision = s.decide(invite("<sip:+33612345678@pbx>"), ORIGIN, Assessment(), NOW)
    assert isinstance(decision, Reject)
    assert (decision.status, decision.reason_phrase, decision.rule_id) == (
        603,
        "Decline",
        "mobile-number",
    )
    assert '"' not in decision.text


def test_monitor_forwards_and_is_audited(tmp_path: Path):
    """A monitored rule continues and the audit records the monitor verdict."""
    s = step(tmp_path, kind="interpersonal", rules={"not-on-list": "monitor"})
    assessment = Assessment()
    assert s.decide(invite("<sip:+33145999999@pbx>"), ORIGIN, assessment, NOW) == Continue()
    assert assessment.rules_fired == ["not-on-list"]
    assert assessment.number_status == "unverified"
    s.close()
    (row,) = entries(tmp_path / "audit.sqlite3")
    assert row["verdict"] == "monitor" and row["rules"] == "not-on-list"
    assert row["call_id"] == "call-1" and row["from_e164"] == "+33145999999"


def test_quotes_in_caller_text_are_neutralised(tmp_path: Path):
    """Text from the caller's headers cannot break the Reason/Warning quoted strings."""
    s = step(tmp_path)
    pai = ("P-Asserted-Identity", 'tel:+33"1\\2')
    decision = s.decide(invite("<sip:+33162000001@pbx>", pai), ORIGIN, Assessment(), NOW)
    assert isinstance(decision, Reject) and decision.rule_id == "invalid-number"
    assert "+33'1'2" in decision.text
    assert '"' not in decision.text and "\\" not in decision.text


def test_other_methods_and_trunks_pass(tmp_path: Path):
    """OPTIONS and requests from trunks are not judged."""
    s = step(tmp_path)
    mobile = "<sip:+33612345678@pbx>"
    assert s.decide(invite(mobile, method="OPTIONS"), ORIGIN, Assessment(), NOW) == Continue()
    trunk = Origin("trunk", "op", "udp", ("192.0.2.1", 5060))
    assert s.decide(invite(mobile), trunk, Assessment(), NOW) == Continue()
    assert isinstance(s.decide(invite(mobile, method="MESSAGE"), ORIGIN, Assessment(), NOW), Reject)


def test_unknown_source_gets_safe_defaults(tmp_path: Path):
    """A source missing from the policy map has no customer: nothing is on its list."""
    s = step(tmp_path)
    other = Origin("source", "ghost", "udp", ("10.9.9.9", 5060))
    decision = s.decide(invite("<sip:+33162000001@pbx>"), other, Assessment(), NOW)
    assert isinstance(decision, Reject) and decision.rule_id == "not-on-list"


def test_gateway_and_diversion_reach_the_assessment(tmp_path: Path):
    """gateway and diverted_from are filled for signing."""
    s = step(tmp_path, kind="interpersonal", gateway=True)
    assessment = Assessment()
    request = invite("<sip:+33699999999@consumer>", ("Diversion", "<sip:+33144000000@pbx>"))
    assert s.decide(request, ORIGIN, assessment, NOW) == Continue()
    assert assessment.gateway is True
    assert assessment.diverted_from == "+33144000000"
    assert assessment.caller_e164 == "+33699999999"


def test_platform_calls_feed_the_history(tmp_path: Path):
    """Forwarded calls from a platform number count towards the flow exception."""
    s = step(tmp_path)
    assert s.history is not None
    s.decide(invite("<sip:+33937000001@pbx>"), ORIGIN, Assessment(), NOW)
    assert s.history.destinations("+33937000001", NOW - 1) == frozenset({"+33299000001"})


def test_trunk_messages_to_a_platform_number_count_as_received(tmp_path: Path):
    """The trunk side counts a MESSAGE to a conditional (0937) number as received; calls,
    other numbers and requests from sources are not counted; nothing is ever refused."""
    s = step(tmp_path)
    counter = InboundMessageCounter(s)
    trunk = Origin("trunk", "op1", "udp", ("192.0.2.10", 5060))

    def inbound(to: str, method: str = "MESSAGE") -> Request:
        headers = [
            ("Via", "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK7"),
            ("From", "<sip:+33612345678@op>;tag=9"),
            ("To", f"<{to}>"),
            ("Call-ID", "in-1"),
            ("CSeq", f"1 {method}"),
        ]
        return Request(method, to, [Header(n, v) for n, v in headers])

    for request, origin in [
        (inbound("sip:+33937000001@sipguard;user=phone"), trunk),
        (inbound("tel:0937000001"), trunk),
        (inbound("sip:+33937000001@sipguard", "INVITE"), trunk),
        (inbound("sip:+33162000001@sipguard"), trunk),
        (inbound("sip:+33937000001@sipguard"), ORIGIN),
    ]:
        assert counter.decide(request, origin, Assessment(), NOW) == Continue()
    assert s.history is not None
    assert s.history.messages("+33937000001", NOW - 86400.0) == (0, 2)
    assert s.history.messages("+33162000001", NOW - 86400.0) == (0, 0)


def test_allowed_platform_messages_count_as_sent(tmp_path: Path):
    """A MESSAGE from a conditional number that goes through is counted as sent."""
    s = step(tmp_path)
    request = invite("<sip:+33937000001@pbx>", method="MESSAGE")
    assert s.decide(request, ORIGIN, Assessment(), NOW) == Continue()
    assert s.history is not None
    assert s.history.messages("+33937000001", NOW - 86400.0) == (1, 0)
