"""STI certificate checks: chain to the MAN trust anchors, validity, key, keyUsage, TNAuthList,
revocation (checklist §3 step 8, §4; man_fr.md §4).

Pure: the trust configuration is loaded once (files read by `TrustStore.from_files`), then
`TrustStore.validate(chain, now)` is a function of its arguments. Path building and signature
checks use `cryptography.x509.verification`; the STI-specific rules (P-256, digitalSignature,
TNAuthList) are checked here on top, because the WebPKI end-entity profile does not know them.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ObjectIdentifier
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from stir_shaken.crl import CrlError, CrlSet, LoadedCrl, load_crl
from stir_shaken.settings import TrunkVerification

# RFC 8226 §9: id-pe-TNAuthList ::= { id-pe 26 }.
TNAUTHLIST_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.26")
# MAN chains are root -> STI-CA intermediate -> operator (man_fr.md §4); allow one spare level.
_MAX_CHAIN_DEPTH = 4
_MEMO_SIZE = 256
_SHA256 = hashes.SHA256()


class CertificateError(ValueError):
    """A certificate or trust file could not be loaded."""


@dataclass(frozen=True, slots=True)
class TnAuthList:
    """The decoded TNAuthList (RFC 8226 §9): SPC codes, TN ranges and single TNs."""

    spcs: tuple[str, ...] = ()
    ranges: tuple[tuple[str, int], ...] = ()
    tns: tuple[str, ...] = ()


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """Read one DER TLV at `pos`; return (tag, content, next position)."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 3 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos:end], end


def _ia5(content: bytes) -> str:
    text = content.decode("ascii")
    if not text.isprintable():
        raise ValueError("non-printable IA5String")
    return text


def parse_tnauthlist(der: bytes) -> TnAuthList:
    """Decode a TNAuthList extension value (RFC 8226 §9, EXPLICIT tags).

    `TNAuthorizationList ::= SEQUENCE SIZE (1..MAX) OF TNEntry`;
    `TNEntry ::= CHOICE { spc [0] ServiceProviderCode, range [1] TelephoneNumberRange,
    one [2] TelephoneNumber }`. The module is EXPLICIT, so an SPC "1234" is
    `30 08 A0 06 16 04 31 32 33 34` (checklist §4). An IMPLICIT `80 04 ...` SPC, which one
    third-party parser emits, is refused rather than guessed at.
    """
    tag, body, end = _read_tlv(der, 0)
    if tag != 0x30 or end != len(der) or not body:
        raise ValueError("TNAuthList is not a non-empty SEQUENCE")
    spcs: list[str] = []
    ranges: list[tuple[str, int]] = []
    tns: list[str] = []
    pos = 0
    while pos < len(body):
        tag, content, pos = _read_tlv(body, pos)
        if tag == 0xA0:  # spc [0] EXPLICIT IA5String
            inner, value, inner_end = _read_tlv(content, 0)
            if inner != 0x16 or inner_end != len(content):
                raise ValueError("SPC is not an IA5String")
            spcs.append(_ia5(value))
        elif tag == 0xA1:  # range [1] EXPLICIT SEQUENCE { start, count }
            inner, seq, _ = _read_tlv(content, 0)
            if inner != 0x30:
                raise ValueError("TN range is not a SEQUENCE")
            t1, start, p = _read_tlv(seq, 0)
            t2, count, _ = _read_tlv(seq, p)
            if t1 != 0x16 or t2 != 0x02:
                raise ValueError("bad TN range")
            ranges.append((_ia5(start), int.from_bytes(count, "big")))
        elif tag == 0xA2:  # one [2] EXPLICIT TelephoneNumber (IA5String)
            inner, value, _ = _read_tlv(content, 0)
            if inner != 0x16:
                raise ValueError("TN is not an IA5String")
            tns.append(_ia5(value))
        else:
            raise ValueError(f"unknown TNEntry tag 0x{tag:02x}")
    return TnAuthList(spcs=tuple(spcs), ranges=tuple(ranges), tns=tuple(tns))


def encode_tnauthlist_spc(spc: str) -> bytes:
    """DER of a TNAuthList holding one SPC, EXPLICIT-tagged as RFC 8226 requires."""
    raw = spc.encode("ascii")
    if not 0 < len(raw) < 100:
        raise ValueError("SPC length out of range")
    ia5 = bytes([0x16, len(raw)]) + raw
    entry = bytes([0xA0, len(ia5)]) + ia5
    return bytes([0x30, len(entry)]) + entry


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Load every certificate from PEM (one or more blocks) or a single DER certificate."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise CertificateError(f"unreadable certificate data: {exc}") from exc


def load_certificate_files(paths: Iterable[str | Path]) -> list[x509.Certificate]:
    """Load every certificate from each PEM/DER file; errors name the file."""
    certs: list[x509.Certificate] = []
    for path in paths:
        try:
            certs.extend(load_certificates(Path(path).read_bytes()))
        except (OSError, CertificateError) as exc:
            raise CertificateError(f"{path}: {exc}") from exc
    return certs


@dataclass(frozen=True, slots=True)
class TrustAnchor:
    """A trust anchor and whether certificates under it must carry a TNAuthList.

    `tnauthlist_required=None` means "use the store default". Relaxing it per anchor exists for
    lab or foreign test PKIs; MAN operator certificates always carry one (man_fr.md §4).
    """

    certificate: x509.Certificate
    tnauthlist_required: bool | None = None


@dataclass(frozen=True, slots=True)
class CertCheck:
    """Outcome of `TrustStore.validate`: on success the leaf key and SPC to report."""

    ok: bool
    reason: str
    public_key: ec.EllipticCurvePublicKey | None = None
    leaf: x509.Certificate | None = None
    spc: str | None = None
    tnauthlist: TnAuthList | None = None


def _utc(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, tz=dt.UTC)


def _fail(reason: str) -> CertCheck:
    return CertCheck(ok=False, reason=reason)


@dataclass(slots=True)
class _Memo:
    """A successful chain validation, reusable while `now` stays inside [start, end)."""

    start: float
    end: float
    check: CertCheck


@dataclass
class TrustStore:
    """Trust anchors, configured intermediates and CRLs of one verification service.

    Immutable once built, apart from a bounded memo of successful validations: a chain that
    validated at some time validates at any other time inside every certificate's validity and
    before the next CRL update, so repeated calls from one operator do not re-run path building.
    """

    anchors: Sequence[TrustAnchor]
    intermediates: Sequence[x509.Certificate] = ()
    crls: CrlSet = field(default_factory=CrlSet)
    tnauthlist_required: bool = True
    _memo: OrderedDict[bytes, _Memo] = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        if not self.anchors:
            raise CertificateError("at least one trust anchor is required")
        self._store = Store([anchor.certificate for anchor in self.anchors])
        self._anchor_required = {
            anchor.certificate.fingerprint(_SHA256): anchor.tnauthlist_required
            for anchor in self.anchors
        }

    @classmethod
    def from_files(
        cls,
        anchors: Iterable[tuple[str | Path, bool | None]],
        intermediates: Iterable[str | Path] = (),
        crls: Iterable[tuple[str | Path, str | Path]] = (),
        *,
        tnauthlist_required: bool = True,
        crl_fail_open: bool = False,
    ) -> TrustStore:
        """Load anchors (file, tnauthlist override), intermediates and (CRL file, signer file).

        Missing anchor/intermediate files are configuration errors and raise. A CRL that cannot
        be loaded or whose signature does not verify with its configured signer does not raise:
        it is recorded as a problem and makes every validation fail unless `crl_fail_open`
        (checklist §3 step 8: fail closed).
        """
        anchor_list = [
            TrustAnchor(cert, required)
            for path, required in anchors
            for cert in load_certificate_files([path])
        ]
        intermediate_list = load_certificate_files(intermediates)
        loaded: list[LoadedCrl] = []
        problems: list[str] = []
        issuers = [a.certificate for a in anchor_list] + intermediate_list
        for crl_path, signer_path in crls:
            try:
                signers = load_certificate_files([signer_path])
                loaded.append(
                    load_crl(Path(crl_path).read_bytes(), signers[0], trusted_issuers=issuers)
                )
            except (OSError, CertificateError, CrlError) as exc:
                problems.append(f"CRL {crl_path}: {exc}")
        return cls(
            anchors=anchor_list,
            intermediates=intermediate_list,
            crls=CrlSet(crls=tuple(loaded), problems=tuple(problems), fail_open=crl_fail_open),
            tnauthlist_required=tnauthlist_required,
        )

    def validate(self, chain: Sequence[x509.Certificate], now: float) -> CertCheck:
        """Check the x5u certificate(s) `chain` (leaf first) at time `now` (checklist §3 step 8).

        Every failure maps to 437 Unsupported Credential in the verifier.
        """
        if not chain:
            return _fail("no certificate at x5u")
        leaf = chain[0]
        key = b"".join(c.fingerprint(_SHA256) for c in chain)
        memo = self._memo.get(key)
        if memo is not None and memo.start <= now < memo.end:
            self._memo.move_to_end(key)
            crl_problem = self.crls.freshness_problem(now)
            if crl_problem is None:
                return memo.check
        check, window = self._validate(leaf, chain[1:], now)
        if check.ok and window is not None:
            self._memo[key] = _Memo(window[0], window[1], check)
            if len(self._memo) > _MEMO_SIZE:
                self._memo.popitem(last=False)
        return check

    def _validate(
        self, leaf: x509.Certificate, extra: Sequence[x509.Certificate], now: float
    ) -> tuple[CertCheck, tuple[float, float] | None]:
        # MAN lines 13-14: expired / not yet valid -> 437. Checked first for a precise reason.
        if now < leaf.not_valid_before_utc.timestamp():
            return _fail("certificate not yet valid"), None
        if now >= leaf.not_valid_after_utc.timestamp():
            return _fail("certificate expired"), None
        public_key = leaf.public_key()
        # MAN CP §6.1.5: ECDSA P-256 only.
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            return _fail("certificate key is not EC P-256"), None
        try:
            usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            return _fail("certificate has no keyUsage"), None
        if not usage.digital_signature:
            return _fail("certificate keyUsage lacks digitalSignature"), None
        try:
            builder = (
                PolicyBuilder()
                .store(self._store)
                .time(_utc(now))
                .max_chain_depth(_MAX_CHAIN_DEPTH)
                # The CA side keeps the WebPKI rules (basicConstraints, keyCertSign, AKI...);
                # the STI end-entity profile (ATIS-1000080) has no SAN/EKU, so the leaf's
                # extensions are checked by hand above and below instead.
                .extension_policies(
                    ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                    ee_policy=ExtensionPolicy.permit_all(),
                )
            )
            verified = builder.build_client_verifier().verify(leaf, [*extra, *self.intermediates])
        except VerificationError as exc:
            return _fail(f"certificate chain does not verify: {exc}"), None
        path = list(verified.chain)
        anchor = path[-1]
        required = self._anchor_required.get(anchor.fingerprint(_SHA256))
        if required is None:
            required = self.tnauthlist_required
        tnauth: TnAuthList | None = None
        try:
            ext = leaf.extensions.get_extension_for_oid(TNAUTHLIST_OID)
        except x509.ExtensionNotFound:
            ext = None
        if ext is not None:
            raw = ext.value
            if not isinstance(raw, x509.UnrecognizedExtension):  # pragma: no cover
                return _fail("TNAuthList extension of unexpected type"), None
            try:
                tnauth = parse_tnauthlist(raw.value)
            except ValueError as exc:
                return _fail(f"TNAuthList unreadable: {exc}"), None
        if required and (tnauth is None or not tnauth.spcs):
            # man_fr.md §4: MAN operator certificates carry exactly one SPC (the APNF code).
            return _fail("certificate has no TNAuthList SPC"), None
        revoked = self.crls.check(path[:-1], now)
        if revoked is not None:
            return _fail(revoked), None
        spc = tnauth.spcs[0] if tnauth is not None and tnauth.spcs else None
        check = CertCheck(
            ok=True,
            reason="certificate valid",
            public_key=public_key,
            leaf=leaf,
            spc=spc,
            tnauthlist=tnauth,
        )
        start = max(c.not_valid_before_utc.timestamp() for c in path)
        end = min(c.not_valid_after_utc.timestamp() for c in path)
        next_update = self.crls.next_update()
        if next_update is not None:
            end = min(end, next_update)
        return check, (start, end)


__all__ = [
    "TNAUTHLIST_OID",
    "CertCheck",
    "CertificateError",
    "CrlError",
    "TnAuthList",
    "TrustAnchor",
    "TrustStore",
    "encode_tnauthlist_spc",
    "load_certificate_files",
    "load_certificates",
    "parse_tnauthlist",
    "trust_store_from_settings",
]


def trust_store_from_settings(settings: TrunkVerification) -> TrustStore:
    """Build the trust store a trunk's `verification:` section describes."""
    return TrustStore.from_files(
        [(anchor.file, anchor.tnauthlist_required) for anchor in settings.trust_anchors],
        settings.intermediates,
        [(crl.file, crl.signer) for crl in settings.crls],
        tnauthlist_required=settings.tnauthlist_required,
        crl_fail_open=settings.crl_fail_open,
    )
