"""Property: whatever we sign, we verify (random TNs, attestation, iat)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stir_lab import X5U, Lab

from stir_shaken.passport import b64url_decode, parse_json_object

tns = st.from_regex(r"[1-9][0-9]{6,14}", fullmatch=True)
attests = st.sampled_from(["A", "B", "C"])
skews = st.integers(min_value=-60, max_value=60)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(orig=tns, dest=tns, attest=attests, skew=skews, origid=st.uuids())
def test_sign_then_verify_round_trip(
    lab: Lab, orig: str, dest: str, attest: str, skew: int, origid: object
) -> None:
    """sign -> verify succeeds and gives back exactly the signed claims."""
    iat = int(lab.now) + skew
    value = lab.signer.sign_shaken(orig=orig, dest=dest, attest=attest, iat=iat, origid=str(origid))  # type: ignore[arg-type]
    result = lab.verify([value], orig="+" + orig, dest=dest)
    assert result.ok, result.reason
    assert result.claims == {
        "attest": attest,
        "dest": {"tn": [dest]},
        "iat": iat,
        "orig": {"tn": orig},
        "origid": str(origid),
    }
    assert result.x5u == X5U


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(orig=tns, dest=tns, other=tns, attest=attests)
def test_verify_binds_orig_and_dest(
    lab: Lab, orig: str, dest: str, other: str, attest: str
) -> None:
    """A PASSporT for one caller never verifies for another (MAN line 22)."""
    value = lab.signer.sign_shaken(
        orig=orig, dest=dest, attest=attest, iat=int(lab.now), origid="o"
    )  # type: ignore[arg-type]
    result = lab.verify([value], orig=other, dest=dest)
    assert result.ok == (other == orig)
    if not result.ok:
        assert result.code == 438


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(orig=tns, dest=tns, iat=st.integers(min_value=0, max_value=2**40))
def test_claims_json_is_canonical(lab: Lab, orig: str, dest: str, iat: int) -> None:
    """The signed claims segment is sorted compact JSON, whatever the values."""
    value = lab.signer.sign_shaken(orig=orig, dest=dest, attest="A", iat=iat, origid="o")
    segment = b64url_decode(value.split(".")[1])
    parsed = parse_json_object(segment)
    import json

    assert segment == json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()
