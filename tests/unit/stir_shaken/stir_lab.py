"""Lab PKI and token-forging helpers for the stir_shaken tests (imported by conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from stir_shaken import pki
from stir_shaken.certs import TrustAnchor, TrustStore
from stir_shaken.identity import format_identity
from stir_shaken.passport import b64url_encode, canonical_json
from stir_shaken.signer import Signer, der_to_raw
from stir_shaken.verifier import CertUnavailable, VerificationResult, Verifier

X5U = "https://cert.example.fr/certs/LAB001/01.cer"
ORIG = "33162000001"
DEST = "33187654321"
NOW = 1_760_000_000.0


@dataclass
class Lab:
    """A MAN-shaped lab PKI with a signer and a verifier around it."""

    root: pki.Issued
    inter: pki.Issued
    pa: pki.Issued
    operator: pki.Issued
    now: float
    certs: dict[str, Sequence[x509.Certificate] | CertUnavailable | None] = field(
        default_factory=dict
    )

    @property
    def signer(self) -> Signer:
        """Signer with the operator key and the default x5u."""
        return Signer(self.operator.key, X5U)

    def trust(self, **kwargs: Any) -> TrustStore:
        """A trust store over the lab root and intermediate."""
        return TrustStore([TrustAnchor(self.root.cert)], [self.inter.cert], **kwargs)

    def lookup(self, url: str) -> Sequence[x509.Certificate] | CertUnavailable | None:
        """Certificates by URL; the default x5u serves the operator certificate."""
        if url in self.certs:
            return self.certs[url]
        return [self.operator.cert] if url == X5U else CertUnavailable("404")

    def verify(
        self,
        values: Sequence[str],
        *,
        orig: str | None = ORIG,
        dest: str | None = DEST,
        now: float | None = None,
        date: str | None = None,
        trust: TrustStore | None = None,
        target: str | None = None,
    ) -> VerificationResult:
        """Run the verifier at the lab's time (or `now`)."""
        verifier = Verifier(trust or self.trust(), freshness=60)
        return verifier.verify(
            values,
            orig_tn=orig,
            dest_tn=dest,
            now=self.now if now is None else now,
            lookup=self.lookup,
            date=date,
            target_tn=target,
        )

    def good(self, **overrides: Any) -> str:
        """A valid shaken Identity value signed now."""
        claims = {"orig": ORIG, "dest": DEST, "attest": "A", "iat": int(self.now), "origid": "o1"}
        claims.update(overrides)
        return self.signer.sign_shaken(**claims)


def shaken_claims(now: float, **overrides: Any) -> dict[str, Any]:
    """A claims dict for forging tokens; keys set to None are dropped."""
    claims: dict[str, Any] = {
        "attest": "A",
        "dest": {"tn": [DEST]},
        "iat": int(now),
        "orig": {"tn": ORIG},
        "origid": "123e4567-e89b-12d3-a456-426614174000",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def jose(**overrides: Any) -> dict[str, Any]:
    """A JOSE header dict for forging tokens; keys set to None are dropped."""
    header: dict[str, Any] = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": X5U}
    header.update(overrides)
    return {k: v for k, v in header.items() if v is not None}


def forge(
    key: ec.EllipticCurvePrivateKey,
    header: dict[str, Any] | bytes,
    claims: dict[str, Any] | bytes,
    *,
    params: str | None = None,
    mangle: Callable[[str, str, str], tuple[str, str, str]] | None = None,
) -> str:
    """Sign arbitrary header/claims bytes and build an Identity value with `params`."""
    from cryptography.hazmat.primitives import hashes

    header_bytes = header if isinstance(header, bytes) else canonical_json(header)
    claims_bytes = claims if isinstance(claims, bytes) else canonical_json(claims)
    h, c = b64url_encode(header_bytes), b64url_encode(claims_bytes)
    der = key.sign(f"{h}.{c}".encode(), ec.ECDSA(hashes.SHA256()))
    s = b64url_encode(der_to_raw(der))
    if mangle is not None:
        h, c, s = mangle(h, c, s)
    token = f"{h}.{c}.{s}"
    if params is None:
        return format_identity(token, X5U)
    return token + params
