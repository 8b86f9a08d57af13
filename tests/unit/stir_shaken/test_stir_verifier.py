"""Every check and SIP code of checklist §3 (MAN table lines), in the verifier."""

from __future__ import annotations

import email.utils

import pytest
from stir_lab import DEST, ORIG, X5U, Lab, forge, jose, shaken_claims

from stir_shaken import pki
from stir_shaken.passport import b64url_encode, canonical_json
from stir_shaken.verifier import CertUnavailable, verify_identity

PARAMS = f";info=<{X5U}>;alg=ES256;ppt=shaken"


def test_valid_identity_passes(lab: Lab) -> None:
    """A correctly signed PASSporT matching From and To verifies, with SPC and attest."""
    result = lab.verify([lab.good()])
    assert result.ok, result.reason
    assert result.code is None
    assert result.spc == "LAB001"
    assert result.attest == "A"
    assert result.verstat == "TN-Validation-Passed"


def test_plus_and_separators_in_sip_numbers_are_canonicalised(lab: Lab) -> None:
    """From '+33 1 62 00 00 01' matches claim orig '33162000001' (RFC 8224 §8.3)."""
    result = lab.verify([lab.good()], orig="+33 1 62-00-00-01", dest="+" + DEST)
    assert result.ok, result.reason


# 1. MAN line 4
def test_no_identity_is_428(lab: Lab) -> None:
    """No Identity header -> 428 Use Identity Header."""
    result = lab.verify([])
    assert (result.code, result.phrase) == (428, "Use Identity Header")


def test_blank_identity_is_428(lab: Lab) -> None:
    """An empty Identity value counts as absent -> 428."""
    assert lab.verify(["  "]).code == 428


# 2. MAN line 1
@pytest.mark.parametrize(("orig", "dest"), [("anonymous", DEST), (ORIG, "alice"), (None, DEST)])
def test_non_tn_from_or_to_is_400(lab: Lab, orig: str | None, dest: str | None) -> None:
    """From/PAI or To that is not a telephone number -> 400."""
    assert lab.verify([lab.good()], orig=orig, dest=dest).code == 400


# 3. Identity parameters
@pytest.mark.parametrize(
    ("params", "code"),
    [
        (";alg=ES256;ppt=shaken", 436),  # line 5: no info
        (f";info=<{X5U}>;ppt=shaken", 437),  # line 9: no alg
        (f";info=<{X5U}>;alg=RS256;ppt=shaken", 437),  # line 9: alg not ES256
        (f";info=<{X5U}>;alg=ES256", 438),  # line 18: no ppt
        (f";info=<{X5U}>;alg=ES256;ppt=foo", 438),  # line 18: ppt not shaken
        (f";info=<{X5U}>;alg=ES256;ppt=shaken;extra=1", 438),  # line 16: 5 elements
        (f";info=<{X5U}>;alg=ES256;ppt=shaken;ppt=shaken", 438),  # duplicate
    ],
)
def test_identity_parameter_checks(lab: Lab, params: str, code: int) -> None:
    """info (436), alg (437), ppt (438) and extra params (438) as in the MAN table."""
    value = forge(lab.operator.key, jose(), shaken_claims(lab.now), params=params)
    assert lab.verify([value]).code == code


def test_quoted_ppt_and_unbracketed_info_are_accepted(lab: Lab) -> None:
    """ppt="shaken" (OpenSIPS/ATIS form) and a bare info URI are legal and verify."""
    value = forge(
        lab.operator.key,
        jose(),
        shaken_claims(lab.now),
        params=f';info={X5U};alg=ES256;ppt="shaken"',
    )
    result = lab.verify([value])
    assert result.ok, result.reason


# 4. JWS structure
@pytest.mark.parametrize(
    "mangle",
    [
        lambda h, c, s: (h, "", s),  # compact form
        lambda h, c, s: (h + "=", c, s),  # padded base64url
        lambda h, c, s: (h, c + "==", s),
        lambda h, c, s: (h, c.replace("e", "+", 1) if "e" in c else "+" + c, s),  # alphabet
        lambda h, c, s: (h, b64url_encode(b"[1,2]"), s),  # not an object
        lambda h, c, s: (h, b64url_encode(b"{not json"), s),
    ],
    ids=["compact", "padded-header", "padded-claims", "std-alphabet", "array", "garbage"],
)
def test_jws_structure_is_438(lab: Lab, mangle: object) -> None:
    """Non-full-form, padded, non-base64url or non-object segments -> 438."""
    value = forge(lab.operator.key, jose(), shaken_claims(lab.now), params=PARAMS, mangle=mangle)  # type: ignore[arg-type]
    assert lab.verify([value]).code == 438


def test_two_segment_token_is_438(lab: Lab) -> None:
    """A token without three segments -> 438."""
    value = lab.good().replace(".", "", 1)
    assert lab.verify([value]).code == 438


def test_duplicate_json_key_is_438(lab: Lab) -> None:
    """Duplicate keys in the claims JSON -> 438 (checklist §3 step 4)."""
    claims = canonical_json(shaken_claims(lab.now))[:-1] + b',"attest":"A"}'
    assert lab.verify([forge(lab.operator.key, jose(), claims)]).code == 438


# 5. JOSE header
@pytest.mark.parametrize(
    ("header", "code"),
    [
        (jose(alg="none"), 437),  # line 10
        (jose(alg=None), 437),
        (jose(typ="JWT"), 437),  # line 11
        (jose(typ=None), 437),
        (jose(ppt=None), 436),  # line 6 (MAN: missing ppt in header -> 436)
        (jose(ppt="div"), 438),  # line 19: differs from param
        (jose(x5u=None), 436),
        (jose(x5u="https://other.example/c.cer"), 436),  # line 7: x5u != info
        (jose(kid="k1"), 436),  # line 6: not exactly alg/ppt/typ/x5u
    ],
)
def test_jose_header_checks(lab: Lab, header: dict[str, object], code: int) -> None:
    """JOSE alg/typ (437), ppt (436/438), x5u (436), extra keys (436)."""
    assert lab.verify([forge(lab.operator.key, header, shaken_claims(lab.now))]).code == code


def test_http_x5u_is_436(lab: Lab) -> None:
    """An http x5u (even when info matches) -> 436; BPCO is HTTPS-only."""
    url = "http://cert.example.fr/c.cer"
    value = forge(
        lab.operator.key,
        jose(x5u=url),
        shaken_claims(lab.now),
        params=f";info=<{url}>;alg=ES256;ppt=shaken",
    )
    lab.certs[url] = [lab.operator.cert]
    assert lab.verify([value]).code == 436


# 6. Freshness
@pytest.mark.parametrize("delta", [-61, 61, -3600])
def test_iat_outside_window_is_403(lab: Lab, delta: int) -> None:
    """iat more than 60 s in the past or the future -> 403 Stale Date (lines 2-3)."""
    result = lab.verify([lab.good(iat=int(lab.now) + delta)])
    assert (result.code, result.phrase) == (403, "Stale Date")


@pytest.mark.parametrize("delta", [-60, 0, 60])
def test_iat_inside_window_passes(lab: Lab, delta: int) -> None:
    """iat within ±60 s is fresh."""
    assert lab.verify([lab.good(iat=int(lab.now) + delta)]).ok


@pytest.mark.parametrize("iat", ["1760000005", 1760000005.0, True, None])
def test_non_integer_iat_is_438(lab: Lab, iat: object) -> None:
    """A string/float/bool/missing iat (RFC 8588 erratum 6656) -> 438."""
    claims = shaken_claims(lab.now, iat=iat)
    assert lab.verify([forge(lab.operator.key, jose(), claims)]).code == 438


def test_stale_date_header_is_403(lab: Lab) -> None:
    """A Date header 2 minutes off -> 403 even with a fresh iat."""
    date = email.utils.formatdate(lab.now - 120, usegmt=True)
    assert lab.verify([lab.good()], date=date).code == 403


def test_fresh_date_header_passes(lab: Lab) -> None:
    """A current Date header is accepted."""
    assert lab.verify([lab.good()], date=email.utils.formatdate(lab.now, usegmt=True)).ok


def test_unreadable_date_header_is_403(lab: Lab) -> None:
    """A Date header that does not parse cannot prove freshness -> 403."""
    assert lab.verify([lab.good()], date="yesterday").code == 403


# 7. Obtaining the certificate
def test_certificate_not_cached_is_pending(lab: Lab) -> None:
    """Not yet fetched -> pending with the x5u, no code (the step Defers)."""
    lab.certs[X5U] = None
    result = lab.verify([lab.good()])
    assert not result.ok and result.code is None and result.pending_url == X5U


def test_unobtainable_certificate_is_436(lab: Lab) -> None:
    """A failed fetch -> 436 Bad Identity Info."""
    lab.certs[X5U] = CertUnavailable("connection refused")
    result = lab.verify([lab.good()])
    assert (result.code, result.phrase) == (436, "Bad Identity Info")


# 8. Certificate checks -> 437
def test_expired_certificate_is_437(lab: Lab) -> None:
    """An expired certificate (line 13) -> 437."""
    result = lab.verify([lab.good(iat=int(lab.now) + 400 * 86400)], now=lab.now + 400 * 86400)
    assert (result.code, result.phrase) == (437, "Unsupported Credential")
    assert "expired" in result.reason


def test_not_yet_valid_certificate_is_437(lab: Lab) -> None:
    """A certificate whose notBefore is ahead (line 14) -> 437."""
    result = lab.verify([lab.good(iat=int(lab.now) - 3600)], now=lab.now - 3600)
    assert result.code == 437 and "not yet valid" in result.reason


def test_untrusted_chain_is_437(lab: Lab) -> None:
    """A certificate from another PKI -> 437."""
    other_root = pki.make_root(now=lab.now)
    other = pki.make_operator(other_root, now=lab.now)
    lab.certs[X5U] = [other.cert]
    value = forge(other.key, jose(), shaken_claims(lab.now))
    assert lab.verify([value]).code == 437


def test_certificate_without_tnauthlist_is_437(lab: Lab) -> None:
    """No TNAuthList (secsipidx accepts it) -> 437."""
    bare = pki.make_operator(lab.inter, None, now=lab.now)
    lab.certs[X5U] = [bare.cert]
    value = forge(bare.key, jose(), shaken_claims(lab.now))
    assert lab.verify([value]).code == 437


def test_revoked_certificate_is_437(lab: Lab) -> None:
    """A certificate on the indirect CRL -> 437."""
    from cryptography.hazmat.primitives import serialization

    from stir_shaken.crl import CrlSet, load_crl

    crl = pki.make_crl(
        lab.pa, [(lab.inter.cert.subject, lab.operator.cert.serial_number)], now=lab.now
    )
    loaded = load_crl(crl.public_bytes(serialization.Encoding.PEM), lab.pa.cert)
    result = lab.verify([lab.good()], trust=lab.trust(crls=CrlSet((loaded,))))
    assert result.code == 437 and "revoked" in result.reason


# 9. Signature
def test_signature_from_another_key_is_438(lab: Lab) -> None:
    """A signature that does not verify with the x5u certificate -> 438."""
    value = forge(pki.new_key(), jose(), shaken_claims(lab.now))
    assert lab.verify([value]).code == 438


def test_der_signature_is_438(lab: Lab) -> None:
    """A DER-encoded (70-72 byte) signature, the classic bug -> 438."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    h = b64url_encode(canonical_json(jose()))
    c = b64url_encode(canonical_json(shaken_claims(lab.now)))
    der = lab.operator.key.sign(f"{h}.{c}".encode(), ec.ECDSA(hashes.SHA256()))
    assert lab.verify([f"{h}.{c}.{b64url_encode(der)}{PARAMS}"]).code == 438


def test_signature_is_over_received_bytes(lab: Lab) -> None:
    """Non-canonical but signed JSON (spaces, other order) verifies: we hash what we got."""
    claims = (
        b'{ "orig":{"tn":"%s"}, "dest":{"tn":["%s"]}, "iat":%d, "attest":"B", "origid":"x" }'
        % (
            ORIG.encode(),
            DEST.encode(),
            int(lab.now),
        )
    )
    assert lab.verify([forge(lab.operator.key, jose(), claims)]).ok


def test_tampered_claims_are_438(lab: Lab) -> None:
    """Changing the claims after signing breaks the signature -> 438."""
    value = lab.good()
    h, _claims, rest = value.split(".", 2)
    other = b64url_encode(canonical_json(shaken_claims(lab.now, attest="B")))
    assert lab.verify([f"{h}.{other}.{rest}"]).code == 438


# 10. Claims
@pytest.mark.parametrize(
    "claims",
    [
        {"attest": "D"},  # line 21
        {"attest": None},
        {"orig": {"tn": "+" + ORIG}},  # '+' in a TN
        {"orig": {"tn": "33162000002"}},  # line 22
        {"orig": {"tn": [ORIG]}},
        {"dest": {"tn": ["33100000000"]}},  # line 23
        {"dest": {"tn": DEST}},  # not an array
        {"dest": {"tn": []}},
        {"dest": {"tn": ["+" + DEST]}},
        {"origid": None},
        {"origid": ""},
    ],
)
def test_claim_checks_are_438(lab: Lab, claims: dict[str, object]) -> None:
    """attest, orig, dest and origid problems -> 438 (lines 21-23)."""
    value = forge(lab.operator.key, jose(), shaken_claims(lab.now, **claims))
    assert lab.verify([value]).code == 438


def test_orig_may_come_from_pai(lab: Lab) -> None:
    """The caller gives PAI's number when From is anonymous; it must match orig."""
    assert lab.verify([lab.good()], orig="+33162000001").ok


# Several headers and div (step 11)
def test_second_header_is_tried_after_a_failure(lab: Lab) -> None:
    """With several shaken headers, a valid one after a broken one verifies (RFC 8224 §4)."""
    broken = forge(pki.new_key(), jose(), shaken_claims(lab.now))
    assert lab.verify([broken, lab.good()]).ok


def test_first_failure_reported_when_all_fail(lab: Lab) -> None:
    """When every header fails the first failure's code is reported."""
    broken = forge(pki.new_key(), jose(), shaken_claims(lab.now))
    assert lab.verify([broken, lab.good(attest="C", iat=0)]).code == 438


def test_div_passport_chains(lab: Lab) -> None:
    """shaken + div: div.orig = orig, div.div in shaken dest, div.dest = Request-URI."""
    div = lab.signer.sign_div(orig=ORIG, div=DEST, dest="33699999999", iat=int(lab.now))
    result = lab.verify([lab.good(), div], target="+33699999999")
    assert result.ok, result.reason
    assert len(result.div) == 1


@pytest.mark.parametrize(
    ("orig", "div", "dest"),
    [
        ("33100000009", DEST, "33699999999"),  # orig differs
        (ORIG, "33100000009", "33699999999"),  # div not a previous dest
        (ORIG, DEST, "33600000000"),  # dest is not the current target
    ],
)
def test_broken_div_chain_is_438(lab: Lab, orig: str, div: str, dest: str) -> None:
    """A div PASSporT that does not continue the shaken one -> 438."""
    value = lab.signer.sign_div(orig=orig, div=div, dest=dest, iat=int(lab.now))
    assert lab.verify([lab.good(), value], target="33699999999").code == 438


def test_only_div_is_438(lab: Lab) -> None:
    """A div PASSporT without a shaken one -> 438."""
    div = lab.signer.sign_div(orig=ORIG, div=DEST, dest="33699999999", iat=int(lab.now))
    assert lab.verify([div]).code == 438


def test_verify_identity_function_form(lab: Lab) -> None:
    """The one-shot helper gives the same verdict as the class."""
    result = verify_identity(
        [lab.good()], trust=lab.trust(), orig_tn=ORIG, dest_tn=DEST, now=lab.now, lookup=lab.lookup
    )
    assert result.ok
