"""Certificate revocation lists for the MAN PKI (checklist §3 step 8, man_fr.md §4).

MAN operator-certificate CRLs are INDIRECT: the operator certificates are issued by the STI-CA
intermediate, but their CRL is signed by the Policy Authority (`cRLIssuer BPCO PA1`). So each
configured CRL comes with its own signer certificate, the signature is checked against that
signer (not against the certificate's issuer), and revoked entries are matched on the pair
(certificate issuer, serial number) as RFC 5280 §5.3.3 defines for indirect CRLs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm


class CrlError(ValueError):
    """A CRL could not be used: unreadable, wrong signer, bad signature, no nextUpdate."""


@dataclass(frozen=True, slots=True)
class LoadedCrl:
    """A CRL whose signature was verified, reduced to what revocation checks need."""

    issuer: x509.Name
    this_update: float
    next_update: float
    revoked: frozenset[tuple[x509.Name, int]]
    indirect: bool


def _entry_issuer(entry: x509.RevokedCertificate) -> x509.Name | None:
    try:
        ext = entry.extensions.get_extension_for_class(x509.CertificateIssuer)
    except x509.ExtensionNotFound:
        return None
    names = ext.value.get_values_for_type(x509.DirectoryName)
    return names[0] if names else None


def load_crl(
    data: bytes,
    signer: x509.Certificate,
    *,
    trusted_issuers: Iterable[x509.Certificate] = (),
) -> LoadedCrl:
    """Parse `data` (PEM or DER), verify it with `signer`, and index its revoked entries.

    When `trusted_issuers` is given, the signer itself must be directly issued by one of them
    (the MAN root signs the PA certificates, man_fr.md §4), so a CRL cannot be signed by an
    arbitrary key somebody put in the configuration.
    """
    try:
        if b"-----BEGIN" in data:
            crl = x509.load_pem_x509_crl(data)
        else:
            crl = x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise CrlError(f"unreadable CRL: {exc}") from exc
    if crl.issuer != signer.subject:
        raise CrlError("CRL issuer does not match its configured signer")
    if not crl.is_signature_valid(signer.public_key()):  # type: ignore[arg-type]
        raise CrlError("CRL signature does not verify with its configured signer")
    issuers = list(trusted_issuers)
    if issuers:
        if not any(_issued_by(signer, issuer) for issuer in issuers):
            raise CrlError("CRL signer is not issued by a configured trust anchor/intermediate")
        try:
            usage = signer.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not usage.crl_sign:
            raise CrlError("CRL signer certificate lacks keyUsage cRLSign")
    if crl.next_update_utc is None:
        raise CrlError("CRL has no nextUpdate")
    indirect = False
    try:
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
        indirect = idp.value.indirect_crl
    except x509.ExtensionNotFound:
        pass
    revoked: set[tuple[x509.Name, int]] = set()
    # RFC 5280 §5.3.3: an entry without certificateIssuer belongs to the issuer of the
    # preceding entry, and the first entry defaults to the CRL issuer. Iteration follows the
    # DER order, which this rule depends on.
    current = crl.issuer
    for entry in crl:
        named = _entry_issuer(entry)
        if named is not None:
            current = named
        revoked.add((current, entry.serial_number))
    return LoadedCrl(
        issuer=crl.issuer,
        this_update=crl.last_update_utc.timestamp(),
        next_update=crl.next_update_utc.timestamp(),
        revoked=frozenset(revoked),
        indirect=indirect,
    )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


@dataclass(frozen=True, slots=True)
class CrlSet:
    """Every configured CRL plus the problems met loading them.

    With `fail_open=False` (the default) a missing, unverifiable or expired CRL makes the
    revocation status unknown, and an unknown status fails the certificate (checklist §3
    step 8; MAN CP §4.9: relying parties keep local CRL copies).
    """

    crls: tuple[LoadedCrl, ...] = ()
    problems: tuple[str, ...] = ()
    fail_open: bool = False
    _index: frozenset[tuple[x509.Name, int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        index: set[tuple[x509.Name, int]] = set()
        for crl in self.crls:
            index |= crl.revoked
        object.__setattr__(self, "_index", frozenset(index))

    def freshness_problem(self, now: float) -> str | None:
        """Why revocation status is unknown at `now`, or None when every CRL is usable."""
        if self.problems:
            return self.problems[0]
        for crl in self.crls:
            if now >= crl.next_update:
                return "CRL expired (past nextUpdate)"
            if now < crl.this_update:
                return "CRL not yet valid (thisUpdate in the future)"
        return None

    def next_update(self) -> float | None:
        """The earliest nextUpdate, after which cached validations must be redone."""
        return min((crl.next_update for crl in self.crls), default=None)

    def check(self, certificates: Sequence[x509.Certificate], now: float) -> str | None:
        """Return why one of `certificates` must be refused, or None when none is revoked."""
        problem = self.freshness_problem(now)
        if problem is not None and not self.fail_open:
            return f"revocation status unknown: {problem}"
        for cert in certificates:
            if (cert.issuer, cert.serial_number) in self._index:
                return f"certificate revoked (serial {cert.serial_number:x})"
        return None
