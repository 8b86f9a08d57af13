"""SigningStep and VerificationStep against real proxy.sip requests."""

from __future__ import annotations

import email.utils
import uuid
from pathlib import Path

import pytest
from stir_lab import X5U, Lab

from proxy.core.decision import Assessment, Continue, Defer, Origin, Reject
from proxy.sip.message import Request, parse_message
from stir_shaken import pki
from stir_shaken.cache import CertCache
from stir_shaken.identity import parse_identity
from stir_shaken.keys import SigningCredentials
from stir_shaken.passport import b64url_decode, parse_json_object
from stir_shaken.settings import SigningSettings, TrunkVerification
from stir_shaken.steps import (
    SigningStep,
    VerificationStep,
    reason_header,
    tn_of_uri,
    verification_failure,
)

SOURCE = Origin(kind="source", name="pbx1", transport="udp", remote=("10.0.0.1", 5060))
TRUNK = Origin(kind="trunk", name="op1", transport="udp", remote=("192.0.2.1", 5060))
TOKEN = "LAB001-ABCDEF123456"


def invite(
    *,
    method: str = "INVITE",
    ruri: str = "sip:+33187654321@trunk.example;user=phone",
    from_: str = "<sip:+33162000001@pbx.example;user=phone>;tag=f1",
    to: str = "<sip:+33187654321@trunk.example;user=phone>",
    extra: list[str] | None = None,
) -> Request:
    """A minimal request from the given header values."""
    lines = [
        f"{method} {ruri} SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1",
        "Max-Forwards: 70",
        f"From: {from_}",
        f"To: {to}",
        "Call-ID: c1@pbx",
        f"CSeq: 1 {method}",
        *(extra or []),
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def signing(lab: Lab, creds: bool = True, **kwargs: object) -> SigningStep:
    """A signing step with the lab operator key."""
    settings = SigningSettings(
        enabled=True,
        key_file=Path("k"),
        cert_file=Path("c"),
        x5u=X5U,
        **kwargs,  # type: ignore[arg-type]
    )
    credentials = SigningCredentials(lab.operator.key, lab.operator.cert) if creds else None
    return SigningStep(settings, credentials)


def claims_of(value: str) -> dict[str, object]:
    """Decode the claims of an Identity value."""
    return parse_json_object(b64url_decode(parse_identity(value).token.split(".")[1]))


def assessment(**kwargs: object) -> Assessment:
    """An assessment with a caller number, as the policy step fills it."""
    base: dict[str, object] = {"caller_e164": "+33162000001", "number_status": "own"}
    base.update(kwargs)
    return Assessment(**base)  # type: ignore[arg-type]


# Signing
@pytest.mark.parametrize(
    ("kwargs", "settings", "attest"),
    [
        ({"number_status": "own"}, {}, "A"),
        ({"number_status": "delegated"}, {}, "A"),
        ({"number_status": "delegated"}, {"attest_delegated": "B"}, "B"),
        ({"number_status": "unverified"}, {}, "B"),
        ({"number_status": None}, {}, "B"),
        ({"gateway": True}, {}, "C"),
        ({"diverted_from": "+33100000009"}, {}, "C"),
    ],
)
def test_signing_attestation(
    lab: Lab, kwargs: dict[str, object], settings: dict[str, object], attest: str
) -> None:
    """own -> A, delegated -> setting, unverified -> B, gateway/diverted -> C."""
    request = invite()
    decision = signing(lab, **settings).decide(request, SOURCE, assessment(**kwargs), lab.now)
    assert decision == Continue()
    values = request.get_all("Identity")
    assert len(values) == 1
    claims = claims_of(values[0])
    assert claims["attest"] == attest
    assert claims["dest"] == {"tn": ["33187654321"]}
    expected_orig = "33100000009" if "diverted_from" in kwargs else "33162000001"
    assert claims["orig"] == {"tn": expected_orig}
    assert claims["iat"] == int(lab.now)


def test_signed_request_verifies(lab: Lab) -> None:
    """What SigningStep adds passes VerificationStep-level verification."""
    request = invite()
    signing(lab).decide(request, SOURCE, assessment(), lab.now)
    result = lab.verify(request.get_all("Identity"), orig="+33162000001", dest="+33187654321")
    assert result.ok, result.reason


def test_signing_origid_is_stable_uuid_per_source(lab: Lab) -> None:
    """origid = uuid5(namespace, source) for every call of one source."""
    step = signing(lab)
    first, second = invite(), invite()
    step.decide(first, SOURCE, assessment(), lab.now)
    step.decide(second, SOURCE, assessment(), lab.now + 1)
    origid = claims_of(first.get_all("Identity")[0])["origid"]
    assert origid == claims_of(second.get_all("Identity")[0])["origid"]
    assert origid == str(uuid.uuid5(SigningSettings().origid_namespace, "pbx1"))


def test_signing_adds_date_when_absent(lab: Lab) -> None:
    """A Date header is added (OpenSIPS does; RFC 8224 §4.1)."""
    request = invite()
    signing(lab).decide(request, SOURCE, assessment(), lab.now)
    date = request.get("Date")
    assert date is not None
    assert email.utils.parsedate_to_datetime(date).timestamp() == int(lab.now)


def test_signing_refuses_stale_date(lab: Lab) -> None:
    """An existing Date more than 60 s off -> 403 Stale Date, nothing signed."""
    request = invite(extra=[f"Date: {email.utils.formatdate(lab.now - 300, usegmt=True)}"])
    decision = signing(lab).decide(request, SOURCE, assessment(), lab.now)
    assert isinstance(decision, Reject) and decision.status == 403
    assert request.get_all("Identity") == []


def test_signing_strips_identity_from_untrusted_source(lab: Lab) -> None:
    """A forged Identity and a bypass header from a PBX are removed, ours is added."""
    request = invite(
        extra=["Identity: forged.token.sig;info=<https://evil/c>", f"P-Identity-Bypass: {TOKEN}"]
    )
    decided = assessment()
    signing(lab).decide(request, SOURCE, decided, lab.now)
    values = request.get_all("Identity")
    assert len(values) == 1 and "forged" not in values[0]
    assert request.get("P-Identity-Bypass") is None
    assert "signing.identity-removed" in decided.rules_fired


def test_trusted_source_identity_kept_and_not_doubled(lab: Lab) -> None:
    """A trusted source's shaken Identity stays and no second one is added."""
    existing = lab.good()
    request = invite(extra=[f"Identity: {existing}"])
    step = signing(lab, trusted_signing_sources=["pbx1"])
    step.decide(request, SOURCE, assessment(), lab.now)
    assert request.get_all("Identity") == [existing]


def test_signing_ignores_trunks_in_dialog_and_other_methods(lab: Lab) -> None:
    """Only initial INVITEs from sources are signed (MESSAGE when configured)."""
    step = signing(lab)
    for request, origin in (
        (invite(), TRUNK),
        (invite(to="<sip:+33187654321@t>;tag=x"), SOURCE),
        (invite(method="MESSAGE"), SOURCE),
        (invite(method="OPTIONS"), SOURCE),
    ):
        step.decide(request, origin, assessment(), lab.now)
        assert request.get_all("Identity") == []
    message = invite(method="MESSAGE")
    signing(lab, sign_message=True).decide(message, SOURCE, assessment(), lab.now)
    assert len(message.get_all("Identity")) == 1


def test_signing_skips_without_numbers(lab: Lab) -> None:
    """No caller number, or a To that is not a number: nothing signed, noted."""
    decided = assessment(caller_e164=None)
    request = invite()
    assert signing(lab).decide(request, SOURCE, decided, lab.now) == Continue()
    assert request.get_all("Identity") == [] and "signing.skipped-no-tn" in decided.rules_fired
    request = invite(to="<sip:support@trunk.example>")
    signing(lab).decide(request, SOURCE, assessment(), lab.now)
    assert request.get_all("Identity") == []


def test_outage_rejects_503_by_default(lab: Lab) -> None:
    """No usable key -> 503."""
    decision = signing(lab, creds=False).decide(invite(), SOURCE, assessment(), lab.now)
    assert isinstance(decision, Reject) and decision.status == 503


def test_outage_bypass_uses_configured_token(lab: Lab) -> None:
    """on_outage=bypass -> forwarded with the operator's configured token, unsigned."""
    request = invite()
    step = signing(lab, creds=False, on_outage="bypass", bypass_token=TOKEN)
    assert step.decide(request, SOURCE, assessment(), lab.now) == Continue()
    assert request.get("P-Identity-Bypass") == TOKEN
    assert request.get_all("Identity") == []


def test_signing_error_is_an_outage(lab: Lab) -> None:
    """An exception while signing is handled as an outage, not a crash."""
    step = signing(lab)

    class Broken:
        def sign_shaken(self, **_: object) -> str:
            raise RuntimeError("HSM gone")

    step._signer = Broken()  # type: ignore[assignment]
    decision = step.decide(invite(), SOURCE, assessment(), lab.now)
    assert isinstance(decision, Reject) and decision.status == 503


def test_from_settings_with_bad_key_is_outage(tmp_path: Path) -> None:
    """A key that cannot be loaded leaves the step in outage mode with a reason."""
    settings = SigningSettings(
        enabled=True, key_file=tmp_path / "missing.key", cert_file=tmp_path / "c.pem", x5u=X5U
    )
    step = SigningStep.from_settings(settings)
    assert step.outage_reason is not None and "missing.key" in step.outage_reason


def test_div_passport_for_diverted_calls(lab: Lab) -> None:
    """With div_passport, a diverted call to a new target also gets a div PASSporT."""
    request = invite(ruri="sip:+33699999999@trunk.example;user=phone")
    step = signing(lab, div_passport=True, diverted_orig="caller")
    step.decide(request, SOURCE, assessment(diverted_from="+33187654321"), lab.now)
    values = request.get_all("Identity")
    assert [parse_identity(v).ppt for v in values] == ["shaken", "div"]
    assert claims_of(values[1])["div"] == {"tn": "33187654321"}
    result = lab.verify(values, orig="33162000001", dest="33187654321", target="33699999999")
    assert result.ok, result.reason


# Verification
def verification(lab: Lab, **kwargs: object) -> VerificationStep:
    """A verification step for trunk op1 over the lab PKI, its cache holding the cert."""
    settings = TrunkVerification.model_validate(
        {"enabled": True, "trust_anchors": ["unused.pem"], **kwargs}
    )
    step = VerificationStep({"op1": settings}, trust_stores={"op1": lab.trust()})
    step.cache.put_certificates(X5U, [lab.operator.cert], lab.now)
    return step


def test_verification_passes_and_annotates_pai(lab: Lab) -> None:
    """A valid call gets verstat=TN-Validation-Passed on PAI."""
    request = invite(
        extra=[
            f"Identity: {lab.good()}",
            "P-Asserted-Identity: <tel:+33162000001;verstat=TN-Validation-Passed>",
        ]
    )
    decided = Assessment()
    assert verification(lab).decide(request, TRUNK, decided, lab.now) == Continue()
    assert request.get("P-Asserted-Identity") == "<tel:+33162000001;verstat=TN-Validation-Passed>"
    assert "verification.passed" in decided.rules_fired


def test_verification_annotates_from_without_pai(lab: Lab) -> None:
    """Without PAI the verstat goes in From's user part, before '@'."""
    request = invite(extra=[f"Identity: {lab.good()}"])
    verification(lab).decide(request, TRUNK, Assessment(), lab.now)
    assert "sip:+33162000001;verstat=TN-Validation-Passed@pbx.example" in (
        request.get("From") or ""
    )


def test_verification_removes_forged_verstat(lab: Lab) -> None:
    """A trunk's own verstat=Passed on a failing call is replaced by Failed."""
    request = invite(
        from_="<sip:+33162000001;verstat=TN-Validation-Passed@pbx.example;user=phone>;tag=f1",
        extra=[f"Identity: {lab.good(orig='33100000000')}"],
    )
    decided = Assessment()
    verification(lab).decide(request, TRUNK, decided, lab.now)
    from_value = request.get("From") or ""
    assert "TN-Validation-Failed" in from_value and "Passed" not in from_value
    assert verification_failure(decided) == (438, "Invalid Identity Header")


def test_verification_defers_for_uncached_certificate(lab: Lab) -> None:
    """Certificate not in the cache -> Defer(x5u), request untouched; after fetch, verdict."""
    step = verification(lab)
    step.cache = CertCache()
    request = invite(extra=[f"Identity: {lab.good()}"])
    before = request.to_bytes()
    assert step.decide(request, TRUNK, Assessment(), lab.now) == Defer(X5U)
    assert request.to_bytes() == before
    step.certificate_fetched(X5U, lab.now, body=pki.pem(lab.operator.cert))
    assert step.decide(request, TRUNK, Assessment(), lab.now) == Continue()
    assert "TN-Validation-Passed" in (request.get("From") or "")


def test_verification_failed_fetch_gives_436(lab: Lab) -> None:
    """A failed fetch recorded in the cache gives 436 on the re-run."""
    step = verification(lab, mode="enforce")
    step.cache = CertCache()
    step.certificate_fetched(X5U, lab.now, error="timeout")
    decision = step.decide(invite(extra=[f"Identity: {lab.good()}"]), TRUNK, Assessment(), lab.now)
    assert isinstance(decision, Reject) and decision.status == 436


@pytest.mark.parametrize("mode", ["annotate", "enforce"])
def test_missing_identity(lab: Lab, mode: str) -> None:
    """No Identity: enforce -> 428 Reject; annotate -> Failed verstat and the code recorded."""
    request = invite()
    decided = Assessment()
    decision = verification(lab, mode=mode).decide(request, TRUNK, decided, lab.now)
    if mode == "enforce":
        assert decision == Reject(428, "Use Identity Header", "no Identity header", "verification")
    else:
        assert decision == Continue()
        assert verification_failure(decided) == (428, "Use Identity Header")
        assert "TN-Validation-Failed" in (request.get("From") or "")


def test_enforce_rejects_with_stale_date_phrase(lab: Lab) -> None:
    """An old iat in enforce mode -> Reject 403 Stale Date."""
    request = invite(extra=[f"Identity: {lab.good(iat=int(lab.now) - 600)}"])
    decision = verification(lab, mode="enforce").decide(request, TRUNK, Assessment(), lab.now)
    assert isinstance(decision, Reject)
    assert (decision.status, decision.reason_phrase) == (403, "Stale Date")


def test_bypass_token_accepted_is_no_validation(lab: Lab) -> None:
    """A configured P-Identity-Bypass token -> No-TN-Validation, not failed, even in enforce."""
    request = invite(extra=[f"P-Identity-Bypass: {TOKEN}"])
    decided = Assessment()
    step = verification(lab, mode="enforce", bypass_tokens=[TOKEN])
    assert step.decide(request, TRUNK, decided, lab.now) == Continue()
    assert "verstat=No-TN-Validation" in (request.get("From") or "")
    assert verification_failure(decided) is None


def test_unknown_bypass_token_is_428(lab: Lab) -> None:
    """A bypass token that is not configured does not excuse the missing Identity."""
    request = invite(extra=["P-Identity-Bypass: OTHER1-XYZ"])
    decision = verification(lab, mode="enforce", bypass_tokens=[TOKEN]).decide(
        request, TRUNK, Assessment(), lab.now
    )
    assert isinstance(decision, Reject) and decision.status == 428


def test_anonymous_from_uses_pai(lab: Lab) -> None:
    """From anonymous -> orig compared with PAI's number, verstat on PAI."""
    request = invite(
        from_="<sip:anonymous@anonymous.invalid>;tag=f1",
        extra=[
            f"Identity: {lab.good()}",
            "P-Asserted-Identity: <sip:+33162000001@op.example;user=phone>",
        ],
    )
    assert (
        verification(lab, mode="enforce").decide(request, TRUNK, Assessment(), lab.now)
        == Continue()
    )
    assert "verstat=TN-Validation-Passed" in (request.get("P-Asserted-Identity") or "")


def test_verification_ignores_sources_and_unconfigured_trunks(lab: Lab) -> None:
    """Sources and trunks without verification pass untouched."""
    step = verification(lab, mode="enforce")
    other = Origin(kind="trunk", name="op2", transport="udp", remote=("192.0.2.2", 5060))
    for origin in (SOURCE, other):
        request = invite()
        assert step.decide(request, origin, Assessment(), lab.now) == Continue()
        assert "verstat" not in (request.get("From") or "")


def test_reason_header_styles() -> None:
    """SIP (MAN don't-kill scenario) and STIR (RFC 9410) Reason values."""
    assert reason_header(438) == 'SIP;cause=438;text="Invalid Identity Header"'
    assert reason_header(436, style="stir") == 'STIR;cause=436;text="Bad Identity Info"'
    assert reason_header(403, 'say "hi"') == 'SIP;cause=403;text="say \\"hi\\""'


def test_tn_of_uri_variants() -> None:
    """tel and sip user parts give canonical TNs; userinfo params are ignored."""
    from proxy.sip.uri import parse_uri

    assert tn_of_uri(parse_uri("tel:+33-1-62-00-00-01")) == "33162000001"
    assert (
        tn_of_uri(parse_uri("sip:+33162000001;tgrp=x;trunk-context=y@h;user=phone"))
        == "33162000001"
    )
    assert tn_of_uri(parse_uri("sip:anonymous@anonymous.invalid")) is None
    assert tn_of_uri(parse_uri("sip:h.example")) is None
