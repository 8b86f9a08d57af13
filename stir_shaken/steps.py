"""Decision steps that plug signing and verification into the proxy core (docs/design.md).

`SigningStep` is the STI-AS for requests from sources (checklist §2); `VerificationStep` the
STI-VS for requests from trunks (checklist §3). Both are sans-IO: `now` is handed in, and a
missing certificate makes the verification step answer `Defer(url)` so the shell fetches it
(`fetch.X5uFetcher`, writing into the step's `cache`) and the core runs the step again.
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxy.core.decision import Assessment, Continue, Decision, Defer, Origin, Reject
from proxy.sip.errors import SipParseError
from proxy.sip.headers import parse_name_addr
from proxy.sip.uri import SipUri, TelUri, Uri
from stir_shaken.cache import CertCache
from stir_shaken.certs import CertificateError, TrustStore, trust_store_from_settings
from stir_shaken.identity import IdentityParseError, parse_identity, split_identity_values
from stir_shaken.keys import KeyLoadError, SigningCredentials, load_credentials
from stir_shaken.passport import PPT_DIV, Attest, TnError, canonical_tn
from stir_shaken.settings import SigningSettings, TrunkVerification
from stir_shaken.signer import Signer
from stir_shaken.verifier import (
    REASON_PHRASES,
    VERSTAT_FAILED,
    VERSTAT_NONE,
    VERSTAT_PASSED,
    VerificationResult,
    Verifier,
)

if TYPE_CHECKING:
    from proxy.sip.message import Request

log = logging.getLogger(__name__)

_CONTINUE = Continue()
BYPASS_HEADER = "P-Identity-Bypass"
PAI_HEADER = "P-Asserted-Identity"
FAILURE_PREFIX = "verification.failed:"


def tn_of_uri(uri: Uri) -> str | None:
    """The canonical TN a From/To/PAI/Request-URI carries, or None (anonymous, not a number).

    For sip: URIs the user part is read up to its first ';', so RFC 4904 `;tgrp=..` or an
    earlier `;verstat=..` inside the userinfo does not break the number (OpenSIPS #3904).
    """
    if isinstance(uri, TelUri):
        text = uri.number
    elif isinstance(uri, SipUri) and uri.user:
        text = uri.user.split(";", 1)[0]
    else:
        return None
    try:
        return canonical_tn(text)
    except TnError:
        return None


def _tn_of_header(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return tn_of_uri(parse_name_addr(value).uri)
    except SipParseError:
        return None


def reason_header(code: int, text: str | None = None, style: str = "sip") -> str:
    """A Reason header value for a verification failure (RFC 3326; RFC 9410 for style "stir").

    `sip`: `SIP;cause=438;text="Invalid Identity Header"` as in the MAN "don't kill" scenario;
    `stir`: `STIR;cause=438;text="..."` as RFC 9410 standardises.
    """
    protocol = "STIR" if style == "stir" else "SIP"
    phrase = text if text is not None else REASON_PHRASES.get(code, "")
    quoted = phrase.replace("\\", "\\\\").replace('"', '\\"')
    return f'{protocol};cause={code};text="{quoted}"'


def verification_failure(assessment: Assessment) -> tuple[int, str] | None:
    """The (code, reason phrase) recorded by `VerificationStep` in annotate mode, if any."""
    for fired in assessment.rules_fired:
        if fired.startswith(FAILURE_PREFIX):
            code = int(fired[len(FAILURE_PREFIX) :])
            return code, REASON_PHRASES.get(code, "")
    return None


def _with_verstat(uri: Uri, verstat: str | None) -> Uri:
    """Return `uri` with verstat removed, then set to `verstat` when given (TS 24.229 §7.2A.20).

    tel: URIs carry it as a URI parameter; sip: URIs in the user part before '@'
    (`sip:+33612345678;verstat=TN-Validation-Passed@host;user=phone`, checklist §3).
    """
    if isinstance(uri, TelUri):
        params = {k: v for k, v in uri.params.items() if k != "verstat"}
        if verstat is not None:
            params["verstat"] = verstat
        return dataclasses.replace(uri, params=params)
    if isinstance(uri, SipUri) and uri.user:
        parts = [p for p in uri.user.split(";") if p.split("=", 1)[0].lower() != "verstat"]
        if verstat is not None:
            parts.append(f"verstat={verstat}")
        return dataclasses.replace(uri, user=";".join(parts))
    return uri


def _rewrite(value: str, verstat: str | None) -> tuple[str, bool]:
    """Rewrite one name-addr value; returns (new value, whether it carried a TN)."""
    try:
        name_addr = parse_name_addr(value)
    except SipParseError:
        return value, False
    has_tn = tn_of_uri(name_addr.uri) is not None
    name_addr.uri = _with_verstat(name_addr.uri, verstat if has_tn else None)
    return str(name_addr), has_tn


def annotate_verstat(request: Request, verstat: str) -> None:
    """Put `verstat` on PAI's TN values, or on From when no PAI carries a TN.

    Any verstat already present on From or PAI is removed first: it came from the trunk, and
    only this verification service's verdict may reach the callee.
    """
    pais = request.get_all(PAI_HEADER)
    new_pais: list[str] = []
    pai_has_tn = False
    for value in pais:
        rewritten, has_tn = _rewrite(value, verstat)
        pai_has_tn = pai_has_tn or has_tn
        new_pais.append(rewritten)
    if pais:
        request.replace(PAI_HEADER, ", ".join(new_pais))
    from_value = request.get("From")
    if from_value is not None:
        rewritten, _ = _rewrite(from_value, None if pai_has_tn else verstat)
        if rewritten != from_value:
            request.replace("From", rewritten)


def _is_initial(request: Request) -> bool:
    try:
        return request.to.tag is None
    except SipParseError:
        return False


def _ppt_of(value: str) -> str | None:
    try:
        return parse_identity(value).ppt
    except IdentityParseError:
        return None


@dataclass(frozen=True, slots=True)
class _Plan:
    orig: str
    dest: str
    attest: Attest
    div_target: str | None


class SigningStep:
    """STI-AS for requests from sources: adds a SHAKEN Identity (checklist §2).

    * initial INVITE (and MESSAGE when `sign_message`) from a source only;
    * Identity and P-Identity-Bypass from a source are removed unless the source is listed in
      `trusted_signing_sources`; a trusted source's shaken Identity is kept and never doubled;
    * orig = `assessment.caller_e164`, dest = To; attest A for own numbers, the configured A/B
      for delegated ones, B for unverified, C for gateways and diverted calls;
    * Date is added when absent, and a Date more than `max_date_skew` off refuses signing
      (403 Stale Date, RFC 8224 §4.1);
    * no usable key, or a signing error: 503, or the operator's bypass token (checklist §2.9).
    """

    name = "signing"

    def __init__(
        self, settings: SigningSettings, credentials: SigningCredentials | None = None
    ) -> None:
        self.settings = settings
        self._signer: Signer | None = None
        self.outage_reason: str | None = None
        if settings.enabled:
            if credentials is None:
                self.outage_reason = "no signing credentials"
            elif settings.x5u is not None:
                self._signer = Signer(credentials.key, settings.x5u)
        methods = {"INVITE"}
        if settings.sign_message:
            methods.add("MESSAGE")
        self._methods = frozenset(methods)
        self._trusted = frozenset(settings.trusted_signing_sources)

    @classmethod
    def from_settings(cls, settings: SigningSettings) -> SigningStep:
        """Load the key and certificate; a load failure leaves the step in outage mode.

        The failure is logged (file names and reason only) and `outage_reason` says why;
        `sipguard check-config` should call `keys.load_credentials` to fail early instead.
        """
        credentials = None
        if settings.enabled and settings.key_file and settings.cert_file:
            try:
                credentials = load_credentials(
                    settings.key_file, settings.cert_file, list(settings.chain)
                )
            except KeyLoadError as exc:
                log.error("signing key unavailable: %s", exc)
                step = cls(settings, None)
                step.outage_reason = str(exc)
                return step
        return cls(settings, credentials)

    def decide(
        self, request: Request, origin: Origin, assessment: Assessment, now: float
    ) -> Decision:
        """Sign an initial request from a source (see the class docstring)."""
        if origin.kind != "source" or request.method not in self._methods:
            return _CONTINUE
        if not _is_initial(request):
            return _CONTINUE
        trusted = origin.name is not None and origin.name in self._trusted
        identities = split_identity_values(request.get_all("Identity"))
        if not trusted:
            # Only we sign for untrusted sources; a forged Identity or bypass token from a PBX
            # must not reach the operator (checklist §2 item 8 and man_fr.md §3).
            if identities:
                request.remove("Identity")
                assessment.rules_fired.append("signing.identity-removed")
            identities = []
            if request.remove(BYPASS_HEADER):
                assessment.rules_fired.append("signing.bypass-removed")
        if not self.settings.enabled:
            return _CONTINUE
        if any(_ppt_of(value) != PPT_DIV for value in identities):
            # Checklist §2 item 8: never add a second shaken Identity.
            assessment.rules_fired.append("signing.already-signed")
            return _CONTINUE
        plan = self._plan(request, assessment)
        if plan is None:
            assessment.rules_fired.append("signing.skipped-no-tn")
            return _CONTINUE
        date = request.get("Date")
        if date is None:
            request.add("Date", email.utils.formatdate(now, usegmt=True))
        else:
            try:
                skew = abs(now - email.utils.parsedate_to_datetime(date).timestamp())
            except (TypeError, ValueError):
                return Reject(400, "Bad Request", "unreadable Date header", "signing.date")
            if skew > self.settings.max_date_skew:
                return Reject(403, "Stale Date", f"Date header {int(skew)} s off", "signing.date")
        if self._signer is None:
            return self._outage(request, assessment, self.outage_reason or "no signer")
        source = origin.name or "unknown"
        try:
            value = self._signer.sign_shaken(
                orig=plan.orig,
                dest=plan.dest,
                attest=plan.attest,
                iat=int(now),
                origid=self.settings.origid_for(source),
            )
            div_value = None
            if plan.div_target is not None:
                div_value = self._signer.sign_div(
                    orig=plan.orig, div=plan.dest, dest=plan.div_target, iat=int(now)
                )
        except Exception as exc:  # any signing failure is an outage (checklist §2.9)
            log.error("signing failed: %s", type(exc).__name__)
            return self._outage(request, assessment, f"signing error: {type(exc).__name__}")
        request.add("Identity", value)
        if div_value is not None:
            request.add("Identity", div_value)
        assessment.rules_fired.append(f"signing.attest-{plan.attest}")
        return _CONTINUE

    def _plan(self, request: Request, assessment: Assessment) -> _Plan | None:
        try:
            dest = tn_of_uri(request.to.uri)
        except SipParseError:
            return None
        caller = assessment.caller_e164
        attest: Attest
        div_target: str | None = None
        if assessment.diverted_from is not None:
            # Forwarded calls -> C (MAN "French recommendations", checklist §2 item 4).
            attest = "C"
            use_diverting = self.settings.diverted_orig == "diverting"
            caller = assessment.diverted_from if use_diverting else caller
            if self.settings.div_passport and dest is not None:
                target = tn_of_uri(request.uri)
                if target is not None and target != dest:
                    div_target = target
        elif assessment.gateway:
            attest = "C"
        elif assessment.number_status == "own":
            attest = "A"
        elif assessment.number_status == "delegated":
            attest = self.settings.attest_delegated
        else:
            attest = "B"
        if caller is None or dest is None:
            return None
        try:
            orig = canonical_tn(caller)
        except TnError:
            return None
        return _Plan(orig=orig, dest=dest, attest=attest, div_target=div_target)

    def _outage(self, request: Request, assessment: Assessment, reason: str) -> Decision:
        assessment.rules_fired.append("signing.outage")
        token = self.settings.bypass_token
        if self.settings.on_outage == "bypass" and token is not None:
            request.remove(BYPASS_HEADER)
            request.add(BYPASS_HEADER, token)
            return _CONTINUE
        return Reject(
            503, "Service Unavailable", f"signing unavailable: {reason}", "signing.outage"
        )


class _TrunkVerifier:
    def __init__(self, settings: TrunkVerification, trust: TrustStore) -> None:
        self.settings = settings
        self.verifier = Verifier(
            trust, freshness=settings.freshness, allow_http_x5u=settings.allow_http_x5u
        )
        methods = {"INVITE"}
        if settings.verify_message:
            methods.add("MESSAGE")
        self.methods = frozenset(methods)
        self.bypass_tokens = frozenset(settings.bypass_tokens)


class VerificationStep:
    """STI-VS for requests from trunks (checklist §3).

    One step serves every trunk; each trunk's `verification:` settings pick the trust store,
    mode and freshness. Outcomes:
    * certificate not cached: `Defer(x5u)`; the shell fetches into `self.cache`, the core
      re-runs the step (nothing is edited before that point);
    * verified: PAI (or From) gets `verstat=TN-Validation-Passed`;
    * failed, annotate mode: `verstat=TN-Validation-Failed`, `verification.failed:<code>`
      in `assessment.rules_fired` (read it with `verification_failure`), and the trunk's
      `reason_style` Reason (`reason_header`) in `assessment.upstream_headers`, which the
      core adds to every response it sends back to the trunk for this request;
    * failed, enforce mode: `Reject(code)` (MAN: the terminating operator breaks the call);
    * no Identity but a configured P-Identity-Bypass token: `verstat=No-TN-Validation`.
    """

    name = "verification"

    def __init__(
        self,
        trunks: Mapping[str, TrunkVerification],
        *,
        cache: CertCache | None = None,
        trust_stores: Mapping[str, TrustStore] | None = None,
    ) -> None:
        self._trunks: dict[str, _TrunkVerifier] = {}
        for name, settings in trunks.items():
            if not settings.enabled:
                continue
            trust = (trust_stores or {}).get(name)
            if trust is None:
                try:
                    trust = trust_store_from_settings(settings)
                except CertificateError as exc:
                    raise CertificateError(f"trunk {name}: {exc}") from exc
            self._trunks[name] = _TrunkVerifier(settings, trust)
        if cache is None:
            sizing = next(iter(trunks.values()), None) or TrunkVerification(enabled=False)
            cache = CertCache(
                sizing.cache_size,
                default_ttl=sizing.cache_default_ttl,
                min_ttl=sizing.cache_min_ttl,
                max_ttl=sizing.cache_max_ttl,
                negative_ttl=sizing.negative_ttl,
            )
        self.cache = cache

    def certificate_fetched(
        self,
        url: str,
        now: float,
        *,
        body: bytes | None = None,
        error: str | None = None,
        cache_control: str | None = None,
    ) -> None:
        """Feed a fetch result into the cache (for shells that fetch without `X5uFetcher`)."""
        if body is not None:
            self.cache.put_bytes(url, body, now, cache_control=cache_control)
        else:
            self.cache.put_failure(url, error or "fetch failed", now)

    def decide(
        self, request: Request, origin: Origin, assessment: Assessment, now: float
    ) -> Decision:
        """Verify an initial request from a trunk (see the class docstring)."""
        if origin.kind != "trunk" or origin.name is None:
            return _CONTINUE
        trunk = self._trunks.get(origin.name)
        if trunk is None or request.method not in trunk.methods or not _is_initial(request):
            return _CONTINUE
        identities = split_identity_values(request.get_all("Identity"))
        if not identities:
            token = (request.get(BYPASS_HEADER) or "").strip()
            if token and token in trunk.bypass_tokens:
                # The signer declared an STI-AS outage with its MAN token: not a failure
                # (Oracle "MAN 2.0" behaviour, man_fr.md §3).
                annotate_verstat(request, VERSTAT_NONE)
                assessment.rules_fired.append("verification.bypass")
                return _CONTINUE
        result = self._verify(trunk, request, identities, now)
        if result.pending_url is not None:
            return Defer(result.pending_url)
        if result.ok:
            annotate_verstat(request, VERSTAT_PASSED)
            assessment.rules_fired.append("verification.passed")
            return _CONTINUE
        code = result.code or 500
        if trunk.settings.mode == "enforce":
            return Reject(code, REASON_PHRASES.get(code, "Error"), result.reason, "verification")
        annotate_verstat(request, VERSTAT_FAILED)
        assessment.rules_fired.append(f"{FAILURE_PREFIX}{code}")
        # Annotate mode lets the call through but tells the originating network why it
        # failed, in every response to it (issue 4 §3): `Reason: SIP;cause=...` as the MAN
        # test mode does, or `Reason: STIR;cause=...` (RFC 9410 §3), per trunk.
        style = trunk.settings.reason_style
        assessment.upstream_headers.append(("Reason", reason_header(code, style=style)))
        return _CONTINUE

    def _verify(
        self, trunk: _TrunkVerifier, request: Request, identities: list[str], now: float
    ) -> VerificationResult:
        # Checklist §3 step 2 and §5: From's number first, PAI's when From is anonymous.
        orig = _tn_of_header(request.get("From"))
        if orig is None:
            orig = next((tn for tn in map(_tn_of_header, request.get_all(PAI_HEADER)) if tn), None)
        dest = _tn_of_header(request.get("To"))
        target = tn_of_uri(request.uri)
        return trunk.verifier.verify(
            identities,
            orig_tn=orig,
            dest_tn=dest,
            now=now,
            lookup=self.cache.lookup(now),
            date=request.get("Date"),
            target_tn=target,
        )


__all__ = [
    "SigningStep",
    "VerificationStep",
    "annotate_verstat",
    "reason_header",
    "tn_of_uri",
    "verification_failure",
]
