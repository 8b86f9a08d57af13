"""VerificationStep fills Assessment.upstream_headers with the annotate-mode Reason (issue 4
§3): `Reason: SIP;cause=...` (MAN test mode) or `Reason: STIR;cause=...` (RFC 9410)."""

from __future__ import annotations

import pytest
from stir_lab import X5U, Lab

from proxy.core.decision import Assessment, Continue, Origin, Reject
from proxy.sip.message import Request, parse_message
from stir_shaken.settings import TrunkVerification
from stir_shaken.steps import VerificationStep, reason_header, verification_failure

TRUNK = Origin(kind="trunk", name="op1", transport="udp", remote=("192.0.2.1", 5060))
TOKEN = "LAB001-ABCDEF123456"


def _invite(*extra: str) -> Request:
    lines = [
        "INVITE sip:+33187654321@pbx.example;user=phone SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1",
        "Max-Forwards: 70",
        "From: <sip:+33162000001@op.example;user=phone>;tag=f1",
        "To: <sip:+33187654321@pbx.example;user=phone>",
        "Call-ID: c1@op",
        "CSeq: 1 INVITE",
        *extra,
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def _step(lab: Lab, **kwargs: object) -> VerificationStep:
    settings = TrunkVerification.model_validate(
        {"enabled": True, "trust_anchors": ["unused.pem"], **kwargs}
    )
    step = VerificationStep({"op1": settings}, trust_stores={"op1": lab.trust()})
    step.cache.put_certificates(X5U, [lab.operator.cert], lab.now)
    return step


@pytest.mark.parametrize(("style", "protocol"), [(None, "SIP"), ("sip", "SIP"), ("stir", "STIR")])
def test_annotate_failure_asks_for_upstream_reason(
    lab: Lab, style: str | None, protocol: str
) -> None:
    """A stale iat in annotate mode: the request goes on, and the Reason in the trunk's style
    (SIP by default) is left for the core to add to the responses."""
    kwargs = {} if style is None else {"reason_style": style}
    request = _invite(f"Identity: {lab.good(iat=int(lab.now) - 600)}")
    assessment = Assessment()
    assert _step(lab, **kwargs).decide(request, TRUNK, assessment, lab.now) == Continue()
    assert verification_failure(assessment) == (403, "Stale Date")
    assert assessment.upstream_headers == [("Reason", f'{protocol};cause=403;text="Stale Date"')]
    assert request.get("Reason") is None  # it goes upstream, not to the PBX


def test_missing_identity_reason_is_428(lab: Lab) -> None:
    """No Identity at all in annotate mode: Reason cause 428."""
    assessment = Assessment()
    _step(lab).decide(_invite(), TRUNK, assessment, lab.now)
    assert assessment.upstream_headers == [("Reason", reason_header(428))]


@pytest.mark.parametrize("extra", [(), (f"P-Identity-Bypass: {TOKEN}",)])
def test_no_reason_when_nothing_failed(lab: Lab, extra: tuple[str, ...]) -> None:
    """A verified call, or a configured bypass token (No-TN-Validation): no Reason."""
    request = _invite(*extra) if extra else _invite(f"Identity: {lab.good()}")
    assessment = Assessment()
    step = _step(lab, bypass_tokens=[TOKEN])
    assert step.decide(request, TRUNK, assessment, lab.now) == Continue()
    assert assessment.upstream_headers == []


def test_enforce_rejects_without_upstream_headers(lab: Lab) -> None:
    """Enforce mode answers with the code itself (the core adds its own Reason to the
    Reject), so the step asks for nothing extra."""
    assessment = Assessment()
    decision = _step(lab, mode="enforce").decide(_invite(), TRUNK, assessment, lab.now)
    assert isinstance(decision, Reject) and decision.status == 428
    assert assessment.upstream_headers == []


def test_reason_style_setting_is_validated() -> None:
    """Only "sip" and "stir" are accepted."""
    with pytest.raises(ValueError, match="reason_style"):
        TrunkVerification.model_validate(
            {"enabled": True, "trust_anchors": ["x.pem"], "reason_style": "q850"}
        )
