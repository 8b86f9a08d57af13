"""Wire format: canonical TNs, deterministic JSON, base64url, Identity header, ES256 bytes."""

from __future__ import annotations

import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from stir_lab import X5U, Lab

from stir_shaken import pki
from stir_shaken.identity import (
    IdentityParseError,
    format_identity,
    parse_identity,
    split_identity_values,
)
from stir_shaken.passport import (
    DivClaims,
    DuplicateKeyError,
    JoseHeader,
    ShakenClaims,
    TnError,
    b64url_decode,
    b64url_encode,
    canonical_tn,
    parse_json_object,
)
from stir_shaken.signer import der_to_raw, raw_to_der, sign_jws, verify_jws_signature


@pytest.mark.parametrize(
    ("text", "tn"),
    [
        ("+33162000001", "33162000001"),
        ("33162000001", "33162000001"),
        ("+33 1 62 00 00 01", "33162000001"),
        ("+33-1.62(00)0001", "33162000001"),
    ],
)
def test_canonical_tn(text: str, tn: str) -> None:
    """Visual separators and '+' are removed (RFC 8224 §8.3)."""
    assert canonical_tn(text) == tn


@pytest.mark.parametrize("text", ["", "+", "anonymous", "3316200000x", "*31#", "1" * 16, "++33"])
def test_canonical_tn_rejects(text: str) -> None:
    """Non-numbers and over-long numbers are refused."""
    with pytest.raises(TnError):
        canonical_tn(text)


def test_shaken_claims_bytes_are_exact() -> None:
    """Exactly the SHAKEN fields, sorted, compact, dest as a one-element array."""
    claims = ShakenClaims(
        orig="33162000001", dest="33187654321", attest="B", iat=1700000000, origid="u-1"
    )
    assert claims.to_json() == (
        b'{"attest":"B","dest":{"tn":["33187654321"]},"iat":1700000000,'
        b'"orig":{"tn":"33162000001"},"origid":"u-1"}'
    )


def test_jose_header_bytes_are_exact() -> None:
    """JOSE header: alg, ppt, typ, x5u in that order (secsipidx/PyJWT byte-identical)."""
    assert JoseHeader(x5u="https://a.example/c.pem").to_json() == (
        b'{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"https://a.example/c.pem"}'
    )


def test_secsipidx_header_encoding_matches() -> None:
    """Our header b64 equals the one secsipidx 1.2.0 emitted for the same x5u."""
    expected = (
        "eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0IiwieDV1Ijoi"
        "aHR0cHM6Ly9hLmV4YW1wbGUvYy5wZW0ifQ"
    )
    assert b64url_encode(JoseHeader(x5u="https://a.example/c.pem").to_json()) == expected


def test_div_claims_bytes_are_exact() -> None:
    """div PASSporT claims (RFC 8946 §3): dest, div, iat, orig only."""
    claims = DivClaims(orig="331", div="332", dest="333", iat=5)
    assert (
        claims.to_json()
        == b'{"dest":{"tn":["333"]},"div":{"tn":"332"},"iat":5,"orig":{"tn":"331"}}'
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"orig": "+33162000001"},
        {"dest": "0187654321x"},
        {"attest": "D"},
        {"iat": "1700000000"},
        {"iat": True},
        {"origid": ""},
    ],
)
def test_shaken_claims_refuse_bad_values(kwargs: dict[str, object]) -> None:
    """The signer cannot build a PASSporT a MAN verifier would refuse."""
    base: dict[str, object] = {
        "orig": "33162000001",
        "dest": "33187654321",
        "attest": "A",
        "iat": 1,
        "origid": "x",
    }
    base.update(kwargs)
    with pytest.raises(ValueError):
        ShakenClaims(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["YQ==", "YQ=", "Y", "Y+8", "Y/8", "YQ\n", "YR"])
def test_b64url_decode_is_strict(text: str) -> None:
    """Padding, standard alphabet, whitespace and non-canonical trailing bits are refused."""
    with pytest.raises(ValueError):
        b64url_decode(text)


def test_b64url_round_trip() -> None:
    """Every length encodes without padding and decodes back."""
    for size in range(10):
        data = bytes(range(size))
        encoded = b64url_encode(data)
        assert "=" not in encoded
        assert b64url_decode(encoded) == data


def test_parse_json_object_refuses_duplicates_and_non_objects() -> None:
    """Duplicate keys, arrays and NaN are refused."""
    with pytest.raises(DuplicateKeyError):
        parse_json_object(b'{"a":1,"a":2}')
    with pytest.raises(ValueError):
        parse_json_object(b"[1]")
    with pytest.raises(ValueError):
        parse_json_object(b'{"a":NaN}')


def test_format_identity() -> None:
    """The emitted form is token;info=<url>;alg=ES256;ppt=shaken."""
    assert (
        format_identity("a.b.c", "https://x/c") == "a.b.c;info=<https://x/c>;alg=ES256;ppt=shaken"
    )
    with pytest.raises(ValueError):
        format_identity("a.b.c", "https://x/<c>")


@pytest.mark.parametrize(
    "value",
    [
        'a.b.c;info=<https://x/c>;alg=ES256;ppt="shaken"',
        "a.b.c ; info = <https://x/c> ; alg=ES256 ; ppt=shaken",
        "a.b.c;INFO=<https://x/c>;Alg=ES256;PPT=shaken",
        "a.b.c;info=https://x/c;alg=ES256;ppt=shaken",
    ],
)
def test_parse_identity_variants(value: str) -> None:
    """Quoted ppt, spaces around ';' '=', upper-case names and bare info are understood."""
    identity = parse_identity(value)
    assert identity.token == "a.b.c"
    assert (identity.info, identity.alg, identity.ppt) == ("https://x/c", "ES256", "shaken")


def test_parse_identity_keeps_extras_and_duplicates() -> None:
    """Extra and repeated params stay visible, for the verifier's 438."""
    identity = parse_identity("t;info=<u>;alg=ES256;ppt=shaken;foo;ppt=div")
    assert [name for name, _ in identity.params] == ["info", "alg", "ppt", "foo", "ppt"]
    assert identity.has_param("foo") and identity.param("foo") is None


@pytest.mark.parametrize(
    "value", ["", ";info=<u>", 'a.b.c;ppt="shaken', "a.b.c;info=<u", "a.b.c;=x", "a b;ppt=x"]
)
def test_parse_identity_rejects_malformed(value: str) -> None:
    """Unterminated quotes/brackets, empty names and spaces in the token raise."""
    with pytest.raises(IdentityParseError):
        parse_identity(value)


def test_split_identity_values() -> None:
    """Comma-joined values split, except inside quotes and <...>."""
    joined = 'a.b.c;info=<https://x/c,1>;ppt="sha,ken", d.e.f;info=<u>'
    assert split_identity_values([joined, "g.h.i"]) == [
        'a.b.c;info=<https://x/c,1>;ppt="sha,ken"',
        "d.e.f;info=<u>",
        "g.h.i",
    ]


def test_raw_signature_pads_short_r_and_s() -> None:
    """der_to_raw left-pads small r/s to 32 bytes each (RFC 7518 §3.4)."""
    raw = der_to_raw(encode_dss_signature(1, 2**200))
    assert len(raw) == 64
    assert raw[:32] == b"\x00" * 31 + b"\x01"
    assert raw_to_der(raw) == encode_dss_signature(1, 2**200)
    with pytest.raises(ValueError):
        raw_to_der(raw[:63])


def test_signatures_are_64_bytes_even_with_leading_zeros() -> None:
    """Sign until r or s has a leading zero byte (~1/64 per signature); still 64 bytes."""
    key = pki.new_key()
    header, claims = b'{"a":1}', b'{"b":2}'
    seen_short = 0
    for _ in range(3000):
        token = sign_jws(header, claims, key)
        raw = b64url_decode(token.rsplit(".", 1)[1])
        assert len(raw) == 64
        if raw[0] == 0 or raw[32] == 0:
            seen_short += 1
            signing_input = token.rsplit(".", 1)[0].encode()
            assert verify_jws_signature(signing_input, raw, key.public_key())
            if seen_short >= 3:
                break
    assert seen_short >= 3


def test_pyjwt_reads_our_tokens(lab: Lab) -> None:
    """PyJWT decodes our PASSporT with the certificate key (independent ES256 check)."""
    value = lab.good()
    token = value.split(";", 1)[0]
    decoded = jwt.decode(
        token,
        lab.operator.cert.public_key(),  # type: ignore[arg-type]
        algorithms=["ES256"],
        options={"verify_iat": False},
    )
    assert decoded["orig"] == {"tn": "33162000001"}
    assert jwt.get_unverified_header(token) == {
        "alg": "ES256",
        "ppt": "shaken",
        "typ": "passport",
        "x5u": X5U,
    }
    assert json.loads(b64url_decode(token.split(".")[1]))["attest"] == "A"


def test_sign_jws_refuses_other_curves() -> None:
    """ES256 is P-256 only."""
    from cryptography.hazmat.primitives.asymmetric import ec

    with pytest.raises(ValueError):
        sign_jws(b"{}", b"{}", ec.generate_private_key(ec.SECP384R1()))


def test_signer_repr_hides_key(lab: Lab) -> None:
    """The key never appears in a repr (and so in logs)."""
    assert "hidden" in repr(lab.signer)
    assert "EllipticCurvePrivateKey" not in repr(lab.signer)
