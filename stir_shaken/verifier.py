"""The STIR/SHAKEN verification service (RFC 8224 §6.2), as a pure function.

Every check of checklist §3 runs in the table's order and the first failure decides the SIP
code, following the MAN table (Mode opératoire v1.7 p.59, man_fr.md §2):

    1 Identity present ....................................... 428
    2 From/PAI and To are TNs .................................. 400
    3 params: info (436), alg=ES256 (437), ppt (438), extras (438)
    4 three base64url segments of JSON objects, full form ...... 438
    5 JOSE: alg (437), typ (437), ppt present (436) = param (438),
      x5u present and == info (436), https (436), no extra keys (436)
    6 iat integer (438), |now-iat| and |now-Date| <= freshness .. 403 Stale Date
    7 certificate obtainable from x5u .......................... 436 (or pending: Defer)
    8 certificate valid, chained, unrevoked, P-256, KU, TNAuthList 437
    9 ES256 signature over the received bytes, raw 64 bytes ..... 438
   10 attest in A/B/C, orig == From/PAI, dest contains To, origid 438
   11 div PASSporTs chain to the shaken one ..................... 438

No I/O: the certificate arrives through `lookup(x5u)`, which answers from a cache filled by the
shell (`fetch.py`); `None` means "not fetched yet" and yields a pending result.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from stir_shaken.certs import TrustStore
from stir_shaken.identity import IdentityHeader, IdentityParseError, parse_identity
from stir_shaken.passport import (
    ALG_ES256,
    ATTEST_LEVELS,
    PPT_DIV,
    PPT_SHAKEN,
    TYP_PASSPORT,
    TnError,
    b64url_decode,
    canonical_tn,
    is_canonical_tn,
    parse_json_object,
)
from stir_shaken.signer import verify_jws_signature

REASON_PHRASES: dict[int, str] = {
    400: "Bad Request",
    403: "Stale Date",
    428: "Use Identity Header",
    436: "Bad Identity Info",
    437: "Unsupported Credential",
    438: "Invalid Identity Header",
    500: "Server Internal Error",
}

VERSTAT_PASSED = "TN-Validation-Passed"
VERSTAT_FAILED = "TN-Validation-Failed"
VERSTAT_NONE = "No-TN-Validation"

_ALLOWED_PARAMS = frozenset({"info", "alg", "ppt"})
_JOSE_KEYS = frozenset({"alg", "ppt", "typ", "x5u"})


@dataclass(frozen=True, slots=True)
class CertUnavailable:
    """The certificate at an x5u could not be obtained (fetch failed, too big, refused URL)."""

    reason: str


ChainLookup = Callable[[str], Sequence[x509.Certificate] | CertUnavailable | None]
"""Given an x5u: its certificates (leaf first), a failure, or None when not fetched yet."""


@dataclass(frozen=True, slots=True)
class VerificationResult:
    """The verdict on a request's Identity header(s).

    `ok` with `code=None` on success. On failure `code` is the SIP status to use and `reason`
    says which check failed. `pending_url` is set (ok False, code None) when the certificate must
    be fetched first.
    """

    ok: bool
    code: int | None
    reason: str
    claims: dict[str, Any] | None = None
    jose: dict[str, Any] | None = None
    identity: IdentityHeader | None = None
    x5u: str | None = None
    spc: str | None = None
    pending_url: str | None = None
    div: tuple[VerificationResult, ...] = field(default=())

    @property
    def phrase(self) -> str:
        """The SIP reason phrase of `code` ("" when none)."""
        return REASON_PHRASES.get(self.code, "") if self.code is not None else ""

    @property
    def attest(self) -> str | None:
        """The attestation level of a verified shaken PASSporT."""
        value = (self.claims or {}).get("attest")
        return value if isinstance(value, str) else None

    @property
    def verstat(self) -> str:
        """The 3GPP TS 24.229 §7.2A.20 verstat value for this outcome."""
        return VERSTAT_PASSED if self.ok else VERSTAT_FAILED


class _Failure(Exception):
    """Internal: one check failed with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Pending(Exception):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


@dataclass(frozen=True, slots=True)
class _Checked:
    identity: IdentityHeader
    jose: dict[str, Any]
    claims: dict[str, Any]
    spc: str | None


def _failed(code: int, reason: str, **extra: Any) -> VerificationResult:
    return VerificationResult(ok=False, code=code, reason=reason, **extra)


def _verified(checked: _Checked) -> VerificationResult:
    return VerificationResult(
        ok=True,
        code=None,
        reason="verified",
        claims=checked.claims,
        jose=checked.jose,
        identity=checked.identity,
        x5u=checked.jose["x5u"],
        spc=checked.spc,
    )


def _ppt_hint(value: str) -> str | None:
    """Best-effort ppt of a header value, only to sort shaken from div before full checks."""
    try:
        return parse_identity(value).ppt
    except IdentityParseError:
        return None


def _tn_claim(container: object, name: str, *, array: bool) -> list[str]:
    """Extract `{"tn": "..."}` (or `{"tn": [...]}` when `array`) as canonical TNs, else 438."""
    if not isinstance(container, dict) or set(container) != {"tn"}:
        raise _Failure(438, f'claim {name} is not {{"tn": ...}}')
    value = container["tn"]
    values = value if array else [value]
    if array and (not isinstance(value, list) or not value):
        raise _Failure(438, f"claim {name}.tn is not a non-empty array")
    for item in values:
        # RFC 8225 §5.2.1: canonical TN, no '+' (checklist §10: secsipidx accepts '+').
        if not is_canonical_tn(item):
            raise _Failure(438, f"claim {name}.tn {item!r} is not a canonical TN")
    return list(values)


class Verifier:
    """A configured verification service: trust store plus freshness and x5u rules."""

    def __init__(
        self, trust: TrustStore, *, freshness: int = 60, allow_http_x5u: bool = False
    ) -> None:
        self.trust = trust
        self.freshness = freshness
        self.allow_http_x5u = allow_http_x5u

    def verify(
        self,
        identities: Sequence[str],
        *,
        orig_tn: str | None,
        dest_tn: str | None,
        now: float,
        lookup: ChainLookup,
        date: str | None = None,
        target_tn: str | None = None,
    ) -> VerificationResult:
        """Verify the Identity header values of one request (checklist §3, in order).

        `orig_tn` is From's number (PAI's when From is anonymous), `dest_tn` To's, both in any
        international notation (canonicalised here); `target_tn` is the Request-URI number,
        against which a div PASSporT's dest is checked (defaults to `dest_tn`).
        """
        # 1. RFC 8224 §6.2 / MAN line 4.
        values = [v for v in identities if v.strip()]
        if not values:
            return _failed(428, "no Identity header")
        # 2. MAN line 1: the SIP identities must be telephone numbers to compare with.
        try:
            orig = canonical_tn(orig_tn or "")
            dest = canonical_tn(dest_tn or "")
            target = canonical_tn(target_tn) if target_tn else dest
        except TnError as exc:
            return _failed(400, f"From/PAI or To is not a telephone number: {exc}")
        divs = [v for v in values if _ppt_hint(v) == PPT_DIV]
        primaries = [v for v in values if _ppt_hint(v) != PPT_DIV]
        if not primaries:
            return _failed(438, "no shaken PASSporT (only div)")
        first_failure: VerificationResult | None = None
        for value in primaries:
            try:
                checked = self._check(value, PPT_SHAKEN, now=now, date=date, lookup=lookup)
                claims = checked.claims
                self._check_shaken_claims(claims, orig=orig, dest=dest)
            except _Pending as pending:
                return VerificationResult(
                    ok=False,
                    code=None,
                    reason="certificate not fetched yet",
                    pending_url=pending.url,
                )
            except _Failure as failure:
                if first_failure is None:
                    first_failure = _failed(failure.code, failure.reason)
                continue
            base = _verified(checked)
            return self._verify_divs(base, divs, now=now, date=date, lookup=lookup, target=target)
        # `primaries` is non-empty and every iteration that did not return recorded a failure.
        return first_failure or _failed(500, "no Identity header could be checked")

    def _verify_divs(
        self,
        base: VerificationResult,
        divs: Sequence[str],
        *,
        now: float,
        date: str | None,
        lookup: ChainLookup,
        target: str,
    ) -> VerificationResult:
        """Step 11 (RFC 8946 §6): each div PASSporT continues the shaken one."""
        if not divs or base.claims is None:
            return base
        orig = base.claims["orig"]["tn"]
        reachable = set(base.claims["dest"]["tn"])
        results: list[VerificationResult] = []
        last_dest: list[str] = []
        try:
            for value in divs:
                checked = self._check(value, PPT_DIV, now=now, date=date, lookup=lookup)
                claims = checked.claims
                div_orig = _tn_claim(claims.get("orig"), "orig", array=False)[0]
                div_div = _tn_claim(claims.get("div"), "div", array=False)[0]
                last_dest = _tn_claim(claims.get("dest"), "dest", array=True)
                if div_orig != orig:
                    raise _Failure(438, "div PASSporT orig differs from the shaken orig")
                if div_div not in reachable:
                    raise _Failure(438, "div PASSporT div.tn is not a previous dest")
                reachable.update(last_dest)
                results.append(_verified(checked))
            if target not in last_dest:
                raise _Failure(438, "last div PASSporT dest is not the current target")
        except _Pending as pending:
            return VerificationResult(
                ok=False, code=None, reason="certificate not fetched yet", pending_url=pending.url
            )
        except _Failure as failure:
            return _failed(
                failure.code,
                f"div: {failure.reason}",
                claims=base.claims,
                jose=base.jose,
                identity=base.identity,
                x5u=base.x5u,
            )
        return VerificationResult(
            ok=True,
            code=None,
            reason="verified",
            claims=base.claims,
            jose=base.jose,
            identity=base.identity,
            x5u=base.x5u,
            spc=base.spc,
            div=tuple(results),
        )

    def _check(
        self,
        value: str,
        expected_ppt: str,
        *,
        now: float,
        date: str | None,
        lookup: ChainLookup,
    ) -> _Checked:
        """Steps 3-9 for one Identity header value."""
        # 3. Parameters (MAN lines 5, 9, 16, 18).
        try:
            identity = parse_identity(value)
        except IdentityParseError as exc:
            raise _Failure(438, f"malformed Identity header: {exc}") from None
        names = [name for name, _ in identity.params]
        if len(names) != len(set(names)):
            raise _Failure(438, "duplicate Identity parameter")
        info = identity.info
        if not info:
            raise _Failure(436, "Identity has no info parameter")
        alg = identity.alg
        if alg != ALG_ES256:
            raise _Failure(437, "Identity alg parameter missing or not ES256")
        ppt = identity.ppt
        if ppt not in (PPT_SHAKEN, PPT_DIV):
            raise _Failure(438, "Identity ppt parameter missing or not shaken/div")
        if ppt != expected_ppt:  # pragma: no cover - selection already sorted on ppt
            raise _Failure(438, f"expected ppt={expected_ppt}")
        extras = [name for name in names if name not in _ALLOWED_PARAMS]
        if extras:
            raise _Failure(438, f"unexpected Identity parameter(s): {', '.join(extras)}")
        # 4. JWS compact serialisation, full form (ATIS-1000074 §5.3.3).
        parts = identity.token.split(".")
        if len(parts) != 3:
            raise _Failure(438, "Identity token is not a three-part JWS")
        if not parts[1]:
            raise _Failure(438, "compact form PASSporT (empty claims) is not allowed")
        try:
            header_bytes = b64url_decode(parts[0])
            claims_bytes = b64url_decode(parts[1])
            signature = b64url_decode(parts[2])
        except ValueError as exc:
            raise _Failure(438, f"JWS segment is not unpadded base64url: {exc}") from None
        try:
            jose = parse_json_object(header_bytes)
            claims = parse_json_object(claims_bytes)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Failure(438, f"JWS segment is not a JSON object: {exc}") from None
        # 5. JOSE header (MAN lines 6, 7, 10, 11, 19).
        if jose.get("alg") != ALG_ES256:
            raise _Failure(437, "JOSE alg missing or not ES256")
        if jose.get("typ") != TYP_PASSPORT:
            raise _Failure(437, "JOSE typ missing or not passport")
        if "ppt" not in jose:
            raise _Failure(436, "JOSE header has no ppt")
        if jose["ppt"] != ppt:
            raise _Failure(438, "JOSE ppt differs from the Identity ppt parameter")
        x5u = jose.get("x5u")
        if not isinstance(x5u, str) or not x5u:
            raise _Failure(436, "JOSE header has no x5u")
        if x5u != info:
            raise _Failure(436, "JOSE x5u differs from the Identity info parameter")
        scheme = urlsplit(x5u).scheme.lower()
        # BPCO is HTTPS-only (MAN CP §2.2); MAN code for http x5u unconfirmed, 436 used.
        if scheme != "https" and not (self.allow_http_x5u and scheme == "http"):
            raise _Failure(436, "x5u is not an https URL")
        if set(jose) != _JOSE_KEYS:
            raise _Failure(436, "JOSE header must hold exactly alg, ppt, typ, x5u")
        # 6. Freshness (MAN lines 2-3; RFC 8224 §4.1 60 s, both directions: OpenSIPS 75a168a).
        iat = claims.get("iat")
        if isinstance(iat, bool) or not isinstance(iat, int):
            raise _Failure(438, "iat missing or not an integer NumericDate")
        if abs(now - iat) > self.freshness:
            raise _Failure(403, f"iat is {int(now - iat)} s from now")
        if date is not None:
            try:
                date_ts = email.utils.parsedate_to_datetime(date).timestamp()
            except (TypeError, ValueError):
                raise _Failure(403, "Date header unreadable") from None
            if abs(now - date_ts) > self.freshness:
                raise _Failure(403, f"Date header is {int(now - date_ts)} s from now")
        # 7. Certificate.
        found = lookup(x5u)
        if found is None:
            raise _Pending(x5u)
        if isinstance(found, CertUnavailable):
            raise _Failure(436, f"certificate unobtainable: {found.reason}")
        # 8. Certificate checks (MAN lines 13-14 and checklist §4).
        cert_check = self.trust.validate(found, now)
        if not cert_check.ok or cert_check.public_key is None:
            raise _Failure(437, cert_check.reason)
        # 9. Signature over the bytes received, not a re-serialisation (checklist §1).
        if len(signature) != 64:
            raise _Failure(438, f"signature is {len(signature)} bytes, not raw 64-byte r||s")
        signing_input = identity.token.rsplit(".", 1)[0].encode("ascii")
        if not verify_jws_signature(signing_input, signature, cert_check.public_key):
            raise _Failure(438, "signature does not verify")
        return _Checked(identity=identity, jose=jose, claims=claims, spc=cert_check.spc)

    @staticmethod
    def _check_shaken_claims(claims: dict[str, Any], *, orig: str, dest: str) -> None:
        """Step 10 (MAN lines 21-23; RFC 8588 §4)."""
        attest = claims.get("attest")
        if not isinstance(attest, str) or attest not in ATTEST_LEVELS:
            raise _Failure(438, f"attest {attest!r} is not A, B or C")
        claim_orig = _tn_claim(claims.get("orig"), "orig", array=False)[0]
        claim_dest = _tn_claim(claims.get("dest"), "dest", array=True)
        if claim_orig != orig:
            raise _Failure(438, "orig does not match From/PAI")
        if dest not in claim_dest:
            raise _Failure(438, "dest does not contain To")
        origid = claims.get("origid")
        if not isinstance(origid, str) or not origid:
            raise _Failure(438, "origid missing or empty")


def verify_identity(
    identities: Sequence[str],
    *,
    trust: TrustStore,
    orig_tn: str | None,
    dest_tn: str | None,
    now: float,
    lookup: ChainLookup,
    date: str | None = None,
    freshness: int = 60,
    allow_http_x5u: bool = False,
) -> VerificationResult:
    """One-shot form of `Verifier.verify`."""
    verifier = Verifier(trust, freshness=freshness, allow_http_x5u=allow_http_x5u)
    return verifier.verify(
        identities, orig_tn=orig_tn, dest_tn=dest_tn, now=now, lookup=lookup, date=date
    )
