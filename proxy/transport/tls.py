"""SSL contexts for the TLS listeners and for TLS connections towards trunks."""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(
    cert_file: Path, key_file: Path, ca_file: Path | None, verify_client: bool
) -> ssl.SSLContext:
    """A TLS server context; with `verify_client`, peers must show a certificate from `ca_file`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if ca_file is not None:
        context.load_verify_locations(ca_file)
    # Client certificates identify sources (issue 3 §3), so ask for one whenever a CA is
    # configured, and insist only when told to.
    if verify_client:
        context.verify_mode = ssl.CERT_REQUIRED
    elif ca_file is not None:
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(
    ca_file: Path | None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A TLS client context towards a trunk, verified against `ca_file` or the system store."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None and key_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context


def peer_subject(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The peer certificate subject as `CN=…,O=…` (RFC 4514 order is not needed for matching)."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    parts = []
    subject: tuple[tuple[tuple[str, str], ...], ...] = cert.get("subject", ())  # type: ignore[assignment]
    for rdn in subject:
        for key, value in rdn:
            short = {
                "commonName": "CN",
                "organizationName": "O",
                "organizationalUnitName": "OU",
                "countryName": "C",
            }.get(key, key)
            parts.append(f"{short}={value}")
    return ",".join(parts) or None
