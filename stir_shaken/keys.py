"""Load the STI-AS signing key and its certificate chain.

Refuses a key file readable or writable by group/others (the key is the operator's, or the
OPTS's, signing credential: MAN CP §6.2), a key that is not P-256 (CP §6.1.5), and a key that
does not match the certificate. Error messages name files, never key material.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from stir_shaken.certs import CertificateError, load_certificate_files


class KeyLoadError(Exception):
    """The signing key or certificate cannot be used; the message is safe to log."""


@dataclass(frozen=True, slots=True)
class SigningCredentials:
    """A private key with its certificate and the rest of its chain."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    def __repr__(self) -> str:
        return f"SigningCredentials(subject={self.cert.subject.rfc4514_string()!r}, key=<hidden>)"


def check_key_permissions(path: Path) -> None:
    """Raise KeyLoadError when `path` grants any permission to group or others."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeyLoadError(f"{path}: cannot stat key file: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyLoadError(
            f"{path}: key file mode {stat.S_IMODE(mode):04o} is open to group/others; chmod 600 it"
        )


def load_credentials(
    key_file: Path, cert_file: Path, chain_files: list[Path] | None = None
) -> SigningCredentials:
    """Load a PEM private key, its certificate (first one in `cert_file`) and chain."""
    check_key_permissions(key_file)
    try:
        data = key_file.read_bytes()
    except OSError as exc:
        raise KeyLoadError(f"{key_file}: cannot read key file: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        # Deliberately no exception chaining: parser messages could echo file contents.
        raise KeyLoadError(f"{key_file}: not an unencrypted PEM private key") from None
    finally:
        del data
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyLoadError(f"{key_file}: signing key must be EC P-256 (ES256)")
    try:
        certs = load_certificate_files([cert_file])
        chain = load_certificate_files(chain_files or [])
    except CertificateError as exc:
        raise KeyLoadError(str(exc)) from None
    cert = certs[0]
    if cert.public_key() != key.public_key():
        raise KeyLoadError(f"{key_file}: key does not match certificate {cert_file}")
    return SigningCredentials(key=key, cert=cert, chain=(*certs[1:], *chain))
