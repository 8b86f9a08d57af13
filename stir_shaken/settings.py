"""Configuration models of signing and verification (owned by stir_shaken).

`proxy.config` composes `SigningSettings` as the `signing:` section and `TrunkVerification` as
each trunk's `verification:` section. Every model forbids unknown keys so a misspelt key is an
error that names it.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# man_fr.md §3: the operator's own token is `SPC-RANDOM` (GCO regex
# `^([0-9A-Z]{6})-([0-9A-Z\-]{16})$`, prose says 1-16 characters). The trace schema also shows an
# `IDENTITY-BYPASS-` prefix; whether the header carries it is unconfirmed, so both are accepted.
BYPASS_TOKEN_RE = re.compile(r"(IDENTITY-BYPASS-)?[0-9A-Z]{6}-[0-9A-Z-]{1,16}")

# Fixed namespace for origid = uuid5(namespace, source name) (checklist §2 item 5): stable across
# restarts and machines, so a given source always presents the same origination identifier.
DEFAULT_ORIGID_NAMESPACE = uuid.UUID("6f1d1a52-3c1e-5b7e-9a51-6e2f4d0c8a10")


def _check_https(url: str, *, allow_http: bool = False) -> str:
    parts = urlsplit(url)
    schemes = {"https", "http"} if allow_http else {"https"}
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"must be an https URL (BPCO is HTTPS-only), got {url!r}")
    return url


def _check_token(token: str) -> str:
    if not BYPASS_TOKEN_RE.fullmatch(token):
        raise ValueError(
            "bypass token must look like SPC-RANDOM (6 characters [0-9A-Z], '-', "
            "1-16 characters [0-9A-Z-]), as issued by the MAN platform"
        )
    return token


class LabX5uServer(BaseModel):
    """An HTTPS server for labs that publishes our certificate at the x5u URL's path.

    In production the certificate lives on the MAN public repository (BPCO); a lab has none,
    so the proxy can serve its own chain (issue 4 §4). The TLS certificate is the lab's
    (`sipguard pki init` writes tls.pem/tls.key); verifiers must trust the lab root.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)
    tls_cert_file: Path
    tls_key_file: Path
    crl_file: Path | None = None
    """Also served at `/crl` (the lab operator certificate's CRL distribution point)."""
    max_age: int = Field(default=3600, ge=0)
    """Cache-Control max-age of the responses, in seconds."""


class SigningSettings(BaseModel):
    """The `signing:` section: the authentication service (checklist §2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    key_file: Path | None = None
    cert_file: Path | None = None
    chain: list[Path] = Field(default_factory=list)
    x5u: str | None = None
    attest_delegated: Literal["A", "B"] = "A"
    sign_message: bool = False
    div_passport: bool = False
    """Add a `div` PASSporT (RFC 8946) to diverted calls whose target differs from To."""
    diverted_orig: Literal["diverting", "caller"] = "diverting"
    """orig of a diverted call's shaken PASSporT: the diverting number, or the caller's."""
    origid_namespace: uuid.UUID = DEFAULT_ORIGID_NAMESPACE
    origids: dict[str, uuid.UUID] = Field(default_factory=dict)
    """Per-source origid overrides; other sources get uuid5(origid_namespace, source name)."""
    on_outage: Literal["reject_503", "bypass"] = "reject_503"
    bypass_token: str | None = None
    trusted_signing_sources: list[str] = Field(default_factory=list)
    lab_x5u_server: LabX5uServer | None = None
    """Serve the certificate chain at the x5u path over HTTPS (labs only; off by default)."""
    max_date_skew: int = Field(default=60, ge=1, le=3600)
    """Refuse to sign when an existing Date header is further off (RFC 8224 §4.1, 60 s)."""

    @field_validator("x5u")
    @classmethod
    def _x5u_https(cls, value: str | None) -> str | None:
        return None if value is None else _check_https(value)

    @field_validator("bypass_token")
    @classmethod
    def _token_format(cls, value: str | None) -> str | None:
        return None if value is None else _check_token(value)

    @model_validator(mode="after")
    def _complete(self) -> SigningSettings:
        if self.enabled:
            missing = [
                name for name in ("key_file", "cert_file", "x5u") if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"signing enabled but {', '.join(missing)} not set")
        if self.on_outage == "bypass" and self.bypass_token is None:
            # Never invent a token: it is the operator's own, issued by the MAN platform.
            raise ValueError("on_outage: bypass needs the operator's bypass_token")
        return self

    def origid_for(self, source: str) -> str:
        """The stable origid (UUID text) of a source."""
        configured = self.origids.get(source)
        if configured is not None:
            return str(configured)
        return str(uuid.uuid5(self.origid_namespace, source))


class TrustAnchorFile(BaseModel):
    """One trust anchor file; `tnauthlist_required` overrides the trunk default for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: Path
    tnauthlist_required: bool | None = None


class CrlFile(BaseModel):
    """A CRL file and the certificate of its signer (the MAN PA for operator CRLs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: Path
    signer: Path


class TrunkVerification(BaseModel):
    """A trunk's `verification:` section: the verification service for calls from it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    mode: Literal["annotate", "enforce"] = "annotate"
    reason_style: Literal["sip", "stir"] = "sip"
    freshness: int = Field(default=60, ge=1, le=3600)
    """Max |now - iat| and |now - Date| in seconds (RFC 8224 §6.2 recommends 60)."""
    trust_anchors: list[TrustAnchorFile] = Field(default_factory=list)
    intermediates: list[Path] = Field(default_factory=list)
    crls: list[CrlFile] = Field(default_factory=list)
    crl_fail_open: bool = False
    tnauthlist_required: bool = True
    allow_http_x5u: bool = False
    allow_private_x5u: bool = False
    verify_message: bool = False
    x5u_tls_ca_file: Path | None = None
    """Extra CA bundle for the x5u HTTPS server (labs); the system store otherwise."""
    fetch_connect_timeout: float = Field(default=2.0, gt=0, le=30)
    fetch_read_timeout: float = Field(default=3.0, gt=0, le=60)
    fetch_max_bytes: int = Field(default=64 * 1024, ge=1024, le=4 * 1024 * 1024)
    cache_size: int = Field(default=1000, ge=1, le=1_000_000)
    cache_default_ttl: int = Field(default=3600, ge=1)
    """Seconds a fetched certificate is kept when the response has no Cache-Control max-age."""
    cache_max_ttl: int = Field(default=86400, ge=1)
    cache_min_ttl: int = Field(default=30, ge=1)
    """Floor on max-age so the re-run after a Defer finds the certificate."""
    negative_ttl: int = Field(default=30, ge=1)
    """Seconds a failed fetch is remembered (its requests get 436 meanwhile)."""
    bypass_tokens: list[str] = Field(default_factory=list)

    @field_validator("trust_anchors", mode="before")
    @classmethod
    def _anchor_shorthand(cls, value: Any) -> Any:
        # Allow `trust_anchors: [root.pem]` as well as `[{file: root.pem, ...}]`.
        if isinstance(value, list):
            return [{"file": v} if isinstance(v, str | Path) else v for v in value]
        return value

    @field_validator("bypass_tokens")
    @classmethod
    def _tokens_format(cls, value: list[str]) -> list[str]:
        return [_check_token(token) for token in value]

    @model_validator(mode="after")
    def _complete(self) -> TrunkVerification:
        if self.enabled and not self.trust_anchors:
            raise ValueError("verification enabled but no trust_anchors configured")
        return self
