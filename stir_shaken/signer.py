"""ES256 PASSporT signing (RFC 8225 §8, RFC 7518 §3.4) and Identity header building.

We sign with `cryptography` directly rather than `jwt.encode` so that every byte is under our
control: the header and claims JSON are our canonical bytes (checklist §1 "Deterministic JSON"),
and the signature is the raw 64-byte r‖s with each half left-padded to 32 bytes. DER output is
the classic bug; about 1 signature in 128 has an r or s shorter than 32 bytes (checklist §1).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from stir_shaken.identity import format_identity
from stir_shaken.passport import (
    PPT_DIV,
    PPT_SHAKEN,
    Attest,
    DivClaims,
    JoseHeader,
    ShakenClaims,
    b64url_encode,
)

_P256_HALF = 32  # bytes of r and of s for P-256 (RFC 7518 §3.4)


def der_to_raw(der: bytes) -> bytes:
    """Convert a DER ECDSA signature to the fixed 64-byte r‖s JWS form (RFC 7518 §3.4)."""
    r, s = decode_dss_signature(der)
    return r.to_bytes(_P256_HALF, "big") + s.to_bytes(_P256_HALF, "big")


def raw_to_der(raw: bytes) -> bytes:
    """Convert a 64-byte r‖s signature to DER; raises ValueError on any other length."""
    if len(raw) != 2 * _P256_HALF:
        raise ValueError(f"ES256 signature must be 64 bytes, got {len(raw)}")
    r = int.from_bytes(raw[:_P256_HALF], "big")
    s = int.from_bytes(raw[_P256_HALF:], "big")
    return encode_dss_signature(r, s)


def sign_jws(header_json: bytes, claims_json: bytes, key: ec.EllipticCurvePrivateKey) -> str:
    """Return the compact JWS `b64(header).b64(claims).b64(r‖s)` signed with ES256."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("ES256 needs a P-256 key")
    signing_input = f"{b64url_encode(header_json)}.{b64url_encode(claims_json)}"
    der = key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    return f"{signing_input}.{b64url_encode(der_to_raw(der))}"


def verify_jws_signature(
    signing_input: bytes, raw_signature: bytes, public_key: ec.EllipticCurvePublicKey
) -> bool:
    """True when `raw_signature` (exactly 64 bytes r‖s) is valid over `signing_input`."""
    try:
        der = raw_to_der(raw_signature)
        public_key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except (ValueError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Signer:
    """An STI-AS credential: the P-256 private key and the x5u where peers find its cert.

    The key is held in memory only; `__repr__` is overridden so it never reaches a log.
    """

    key: ec.EllipticCurvePrivateKey
    x5u: str

    def __repr__(self) -> str:
        return f"Signer(x5u={self.x5u!r}, key=<hidden>)"

    def sign_shaken(
        self, *, orig: str, dest: str, attest: Attest, iat: int, origid: str | None = None
    ) -> str:
        """Return a full Identity header value for a SHAKEN PASSporT.

        `orig`/`dest` must be canonical TNs. Without `origid`, a random UUID is used (as
        secsipidx does); callers that know the source should pass its stable UUID (§2 item 5).
        """
        claims = ShakenClaims(
            orig=orig, dest=dest, attest=attest, iat=iat, origid=origid or str(uuid.uuid4())
        )
        header = JoseHeader(x5u=self.x5u, ppt=PPT_SHAKEN)
        token = sign_jws(header.to_json(), claims.to_json(), self.key)
        return format_identity(token, self.x5u, ppt=PPT_SHAKEN)

    def sign_div(self, *, orig: str, div: str, dest: str, iat: int) -> str:
        """Return a full Identity header value for a `div` PASSporT (RFC 8946 §3)."""
        claims = DivClaims(orig=orig, div=div, dest=dest, iat=iat)
        header = JoseHeader(x5u=self.x5u, ppt=PPT_DIV)
        token = sign_jws(header.to_json(), claims.to_json(), self.key)
        return format_identity(token, self.x5u, ppt=PPT_DIV)
