"""A lab PKI shaped like the French MAN one (man_fr.md §4, checklist §4), for tests and demos.

    root (offline)  ──> STI-CA intermediate ──> operator certificate (TNAuthList = one SPC)
        └─────────────> policy authority (PA) ──signs──> indirect CRL of operator certificates

`sipguard pki init DIR` writes it as PEM files; the builders are public so tests can make
variants (expired, revoked, no TNAuthList, wrong curve...). Lab certificates start one minute
in the past: the MAN rule "notBefore ≥ issuance + 7 days" (CP §4.3) is for production only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stir_shaken.certs import TNAUTHLIST_OID, encode_tnauthlist_spc

DEFAULT_SPC = "LAB001"


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def __repr__(self) -> str:
        return f"Issued(subject={self.cert.subject.rfc4514_string()!r}, key=<hidden>)"


def new_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    """A fresh EC key, P-256 unless told otherwise (MAN CP §6.1.5)."""
    return ec.generate_private_key(curve or ec.SECP256R1())


def _name(common_name: str, organisation: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
        ]
    )


def _now(now: float | None) -> dt.datetime:
    base = dt.datetime.now(dt.UTC) if now is None else dt.datetime.fromtimestamp(now, dt.UTC)
    return base.replace(microsecond=0)


def _ski(key: ec.EllipticCurvePrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def _aki(issuer: Issued) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _usage(*, digital_signature: bool, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_root(
    common_name: str = "Lab MAN Root", *, now: float | None = None, days: int = 3650
) -> Issued:
    """A self-signed root CA (MAN: offline root, ≤ 10 years, CP §6.3.2)."""
    key = new_key()
    start = _now(now) - dt.timedelta(minutes=1)
    name = _name(common_name, "Lab Plateforme MAN", "Certificate Authority")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(_ski(key), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def make_intermediate(
    root: Issued,
    common_name: str = "Lab CA1 - SHAKEN Intermediate",
    *,
    now: float | None = None,
    days: int = 1825,
) -> Issued:
    """The online STI-CA that issues operator certificates (MAN CA ≤ 5 years)."""
    key = new_key()
    start = _now(now) - dt.timedelta(minutes=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, "Lab Base des Certificats Operateurs", "CA"))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(_ski(key), critical=False)
        .add_extension(_aki(root), critical=False)
        .sign(root.key, hashes.SHA256())
    )
    return Issued(cert, key)


def make_policy_authority(
    root: Issued, common_name: str = "Lab PA1", *, now: float | None = None, days: int = 1825
) -> Issued:
    """The Policy Authority certificate whose key signs the operator-certificate CRL.

    Not a CA (it issues no certificate), so keyUsage is cRLSign + digitalSignature without
    keyCertSign (RFC 5280 §4.2.1.3 only ties keyCertSign to cA=TRUE).
    """
    key = new_key()
    start = _now(now) - dt.timedelta(minutes=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, "Lab Base des Certificats Operateurs", "PA"))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(digital_signature=True, crl_sign=True), critical=True)
        .add_extension(_ski(key), critical=False)
        .add_extension(_aki(root), critical=False)
        .sign(root.key, hashes.SHA256())
    )
    return Issued(cert, key)


def make_operator(
    issuer: Issued,
    spc: str | None = DEFAULT_SPC,
    *,
    crl_issuer: x509.Name | None = None,
    crl_url: str = "https://127.0.0.1/crl",
    operator: str = "Lab operator",
    now: float | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
    digital_signature: bool = True,
) -> Issued:
    """An operator (STI end-entity) certificate per ATIS-1000080 and the APNF sample.

    Subject `CN=SHAKEN <SPC>, C=FR, O=<operator>, OU=Service Provider`; basicConstraints and
    keyUsage critical; one CRL distribution point whose cRLIssuer is the PA (indirect CRL);
    TNAuthList with a single SPC. `spc=None` leaves TNAuthList out (for negative tests).
    """
    key = key or new_key()
    start = not_before or (_now(now) - dt.timedelta(minutes=1))
    end = not_after or (start + dt.timedelta(days=365))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(f"SHAKEN {spc or 'NOSPC'}", operator, "Service Provider"))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(digital_signature=digital_signature), critical=True)
        .add_extension(_ski(key), critical=False)
        .add_extension(_aki(issuer), critical=False)
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(crl_url)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=[x509.DirectoryName(crl_issuer)] if crl_issuer else None,
                    )
                ]
            ),
            critical=False,
        )
    )
    if spc is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(TNAUTHLIST_OID, encode_tnauthlist_spc(spc)),
            critical=False,
        )
    return Issued(builder.sign(issuer.key, hashes.SHA256()), key)


def make_crl(
    signer: Issued,
    revoked: Sequence[tuple[x509.Name, int]] = (),
    *,
    now: float | None = None,
    this_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
    indirect: bool = True,
) -> x509.CertificateRevocationList:
    """A CRL signed by `signer`; `revoked` lists (certificate issuer, serial).

    With `indirect=True` the IssuingDistributionPoint says indirectCRL and every entry carries
    certificateIssuer (RFC 5280 §5.2.5, §5.3.3), as the MAN PA's CRL does.
    """
    start = this_update or (_now(now) - dt.timedelta(minutes=1))
    end = next_update or (start + dt.timedelta(days=1))
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(signer.cert.subject)
        .last_update(start)
        .next_update(end)
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    if indirect:
        builder = builder.add_extension(
            x509.IssuingDistributionPoint(
                full_name=None,
                relative_name=None,
                only_contains_user_certs=False,
                only_contains_ca_certs=False,
                only_some_reasons=None,
                indirect_crl=True,
                only_contains_attribute_certs=False,
            ),
            critical=True,
        )
    for issuer_name, serial in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(start)
        if indirect:
            entry = entry.add_extension(
                x509.CertificateIssuer([x509.DirectoryName(issuer_name)]), critical=True
            )
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(signer.key, hashes.SHA256())


def make_tls_server(
    issuer: Issued, hosts: Sequence[str] = ("127.0.0.1", "localhost"), *, now: float | None = None
) -> Issued:
    """A TLS server certificate for a lab x5u (certificate repository) web server."""
    key = new_key()
    start = _now(now) - dt.timedelta(minutes=1)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0], "Lab repository", "BPCO"))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_aki(issuer), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )
    return Issued(cert, key)


def pem(*certs: x509.Certificate) -> bytes:
    """Concatenated PEM of `certs`."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write an unencrypted PKCS#8 PEM key, created with mode 0600 (never wider, even briefly)."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)  # the umask can only narrow the mode, but be explicit


@dataclass(frozen=True, slots=True)
class LabPki:
    """Paths written by `init_pki`."""

    directory: Path
    root: Path
    intermediate: Path
    policy_authority: Path
    operator_cert: Path
    operator_key: Path
    operator_chain: Path
    crl: Path
    tls_cert: Path
    tls_key: Path
    spc: str
    x5u: str


def init_pki(
    directory: Path,
    *,
    spc: str = DEFAULT_SPC,
    x5u_base: str = "https://127.0.0.1:8443",
    now: float | None = None,
) -> LabPki:
    """Create the lab PKI under `directory` and return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    root = make_root(now=now)
    intermediate = make_intermediate(root, now=now)
    pa = make_policy_authority(root, now=now)
    operator = make_operator(
        intermediate, spc, crl_issuer=pa.cert.subject, crl_url=f"{x5u_base}/crl", now=now
    )
    crl = make_crl(pa, now=now)
    tls = make_tls_server(root, now=now)
    x5u = f"{x5u_base}/certs/{spc}/{operator.cert.serial_number:X}.cer"
    files = {
        "root.pem": pem(root.cert),
        "intermediate.pem": pem(intermediate.cert),
        "pa.pem": pem(pa.cert),
        "operator.pem": pem(operator.cert),
        "operator-chain.pem": pem(operator.cert, intermediate.cert),
        "crl.pem": crl.public_bytes(serialization.Encoding.PEM),
        "tls.pem": pem(tls.cert, root.cert),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    for name, issued in (
        ("root.key", root),
        ("intermediate.key", intermediate),
        ("pa.key", pa),
        ("operator.key", operator),
        ("tls.key", tls),
    ):
        write_private_key(directory / name, issued.key)
    return LabPki(
        directory=directory,
        root=directory / "root.pem",
        intermediate=directory / "intermediate.pem",
        policy_authority=directory / "pa.pem",
        operator_cert=directory / "operator.pem",
        operator_key=directory / "operator.key",
        operator_chain=directory / "operator-chain.pem",
        crl=directory / "crl.pem",
        tls_cert=directory / "tls.pem",
        tls_key=directory / "tls.key",
        spc=spc,
        x5u=x5u,
    )
