"""Certificates, TNAuthList, indirect CRLs, key loading, lab PKI and settings."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError
from stir_lab import NOW, Lab

from stir_shaken import pki
from stir_shaken.cache import CertCache, cache_ttl
from stir_shaken.certs import (
    TrustAnchor,
    TrustStore,
    encode_tnauthlist_spc,
    parse_tnauthlist,
    trust_store_from_settings,
)
from stir_shaken.crl import CrlError, CrlSet, load_crl
from stir_shaken.keys import KeyLoadError, load_credentials
from stir_shaken.settings import SigningSettings, TrunkVerification
from stir_shaken.verifier import CertUnavailable


def _pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


# TNAuthList
def test_tnauthlist_spc_encoding_matches_checklist() -> None:
    """SPC "1234" is 30 08 A0 06 16 04 31 32 33 34 (EXPLICIT tags, checklist §4)."""
    assert encode_tnauthlist_spc("1234") == bytes.fromhex("3008A006160431323334")


def test_tnauthlist_apnf_sample_decodes() -> None:
    """The APNF sample 30 0A A0 08 16 06 'OPC000' gives SPC OPC000 (man_fr.md §4)."""
    assert parse_tnauthlist(bytes.fromhex("300AA0081606") + b"OPC000").spcs == ("OPC000",)


@pytest.mark.parametrize(
    "der",
    [
        bytes.fromhex("30068004") + b"1234",  # IMPLICIT [0]: refused, not guessed
        bytes.fromhex("3000"),  # empty
        bytes.fromhex("3108A006160431323334"),  # SET, not SEQUENCE
        bytes.fromhex("3008A0061604313233"),  # truncated
    ],
)
def test_tnauthlist_rejects_malformed(der: bytes) -> None:
    """Implicit tags, empty lists and truncated DER raise."""
    with pytest.raises(ValueError):
        parse_tnauthlist(der)


def test_tnauthlist_tn_and_range_entries() -> None:
    """one [2] and range [1] entries are decoded too."""
    one = b"\x16\x0b33162000001"
    entry_one = bytes([0xA2, len(one)]) + one
    seq = b"\x16\x0b33162000000" + b"\x02\x01\x0a"
    range_ = bytes([0x30, len(seq)]) + seq
    entry_range = bytes([0xA1, len(range_)]) + range_
    body = entry_one + entry_range
    parsed = parse_tnauthlist(bytes([0x30, len(body)]) + body)
    assert parsed.tns == ("33162000001",)
    assert parsed.ranges == (("33162000000", 10),)


# Chain building
def test_chain_with_configured_intermediate(lab: Lab) -> None:
    """Leaf -> configured intermediate -> anchor validates and yields the SPC."""
    check = lab.trust().validate([lab.operator.cert], lab.now)
    assert check.ok and check.spc == "LAB001"


def test_chain_with_intermediate_from_x5u(lab: Lab) -> None:
    """An intermediate served with the leaf at x5u is used for path building."""
    store = TrustStore([TrustAnchor(lab.root.cert)])
    assert store.validate([lab.operator.cert, lab.inter.cert], lab.now).ok


def test_chain_without_intermediate_fails(lab: Lab) -> None:
    """No intermediate anywhere -> no path to the anchor."""
    store = TrustStore([TrustAnchor(lab.root.cert)])
    check = store.validate([lab.operator.cert], lab.now)
    assert not check.ok and "chain" in check.reason


def test_intermediate_path_length_is_enforced(lab: Lab) -> None:
    """A sub-CA under a pathlen-0 intermediate cannot issue operator certificates."""
    root = pki.make_root(now=NOW)
    ca = pki.make_intermediate(root, now=NOW)
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    # pathlen 0 on the CA forbids a sub-CA: the chain must fail.
    sub = pki.make_intermediate(ca, "Sub CA", now=NOW)
    leaf = pki.make_operator(sub, now=NOW)
    store = TrustStore([TrustAnchor(root.cert)], [ca.cert, sub.cert])
    assert not store.validate([leaf.cert], NOW + 5).ok


def test_p384_leaf_is_refused(lab: Lab) -> None:
    """MAN CP §6.1.5: P-256 only."""
    leaf = pki.make_operator(lab.inter, key=ec.generate_private_key(ec.SECP384R1()), now=NOW)
    check = lab.trust().validate([leaf.cert], lab.now)
    assert not check.ok and "P-256" in check.reason


def test_leaf_without_digital_signature_is_refused(lab: Lab) -> None:
    """keyUsage must include digitalSignature."""
    leaf = pki.make_operator(lab.inter, digital_signature=False, now=NOW)
    check = lab.trust().validate([leaf.cert], lab.now)
    assert not check.ok and "digitalSignature" in check.reason


def test_missing_tnauthlist_relaxed_per_anchor(lab: Lab) -> None:
    """TNAuthList is required by default, but an anchor may relax it (lab PKIs)."""
    bare = pki.make_operator(lab.inter, None, now=NOW)
    assert not lab.trust().validate([bare.cert], lab.now).ok
    relaxed = TrustStore([TrustAnchor(lab.root.cert, tnauthlist_required=False)], [lab.inter.cert])
    check = relaxed.validate([bare.cert], lab.now)
    assert check.ok and check.spc is None


def test_missing_tnauthlist_relaxed_store_wide_but_anchor_can_insist(lab: Lab) -> None:
    """Store default off, anchor override on -> still refused."""
    bare = pki.make_operator(lab.inter, None, now=NOW)
    assert (
        TrustStore([TrustAnchor(lab.root.cert)], [lab.inter.cert], tnauthlist_required=False)
        .validate([bare.cert], lab.now)
        .ok
    )
    strict = TrustStore(
        [TrustAnchor(lab.root.cert, tnauthlist_required=True)],
        [lab.inter.cert],
        tnauthlist_required=False,
    )
    assert not strict.validate([bare.cert], lab.now).ok


def test_memo_does_not_outlive_certificate(lab: Lab) -> None:
    """A cached successful validation is not reused after the leaf expires."""
    store = lab.trust()
    assert store.validate([lab.operator.cert], lab.now).ok
    later = lab.operator.cert.not_valid_after_utc.timestamp() + 1
    assert not store.validate([lab.operator.cert], later).ok


# Indirect CRLs
def _crl_store(lab: Lab, crl: bytes, signer: x509.Certificate, **kwargs: object) -> TrustStore:
    loaded = load_crl(crl, signer, trusted_issuers=[lab.root.cert])
    return lab.trust(crls=CrlSet((loaded,), **kwargs))  # type: ignore[arg-type]


def test_revoked_cert_detected_with_indirect_crl(lab: Lab) -> None:
    """PA-signed CRL, entry with certificateIssuer = intermediate, matches the operator cert."""
    crl = pki.make_crl(lab.pa, [(lab.inter.cert.subject, lab.operator.cert.serial_number)], now=NOW)
    check = _crl_store(lab, _pem(crl), lab.pa.cert).validate([lab.operator.cert], lab.now)
    assert not check.ok and "revoked" in check.reason


def test_unrevoked_cert_passes_with_crl(lab: Lab) -> None:
    """A CRL listing another serial does not touch the operator cert."""
    crl = pki.make_crl(lab.pa, [(lab.inter.cert.subject, 12345)], now=NOW)
    assert _crl_store(lab, _pem(crl), lab.pa.cert).validate([lab.operator.cert], lab.now).ok


def test_same_serial_other_issuer_is_not_revoked(lab: Lab) -> None:
    """Matching is on (issuer, serial), not serial alone (RFC 5280 §5.3.3)."""
    crl = pki.make_crl(lab.pa, [(lab.root.cert.subject, lab.operator.cert.serial_number)], now=NOW)
    assert _crl_store(lab, _pem(crl), lab.pa.cert).validate([lab.operator.cert], lab.now).ok


def test_certificate_issuer_carries_over_to_next_entries(lab: Lab) -> None:
    """An entry without certificateIssuer inherits the previous entry's issuer (§5.3.3)."""
    from cryptography.hazmat.primitives import hashes

    start = dt.datetime.fromtimestamp(NOW, dt.UTC)
    first = (
        x509.RevokedCertificateBuilder()
        .serial_number(1)
        .revocation_date(start)
        .add_extension(x509.CertificateIssuer([x509.DirectoryName(lab.inter.cert.subject)]), True)
        .build()
    )
    second = (
        x509.RevokedCertificateBuilder()
        .serial_number(lab.operator.cert.serial_number)
        .revocation_date(start)
        .build()
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(lab.pa.cert.subject)
        .last_update(start)
        .next_update(start + dt.timedelta(days=1))
        .add_revoked_certificate(first)
        .add_revoked_certificate(second)
        .sign(lab.pa.key, hashes.SHA256())
    )
    check = _crl_store(lab, _pem(crl), lab.pa.cert).validate([lab.operator.cert], lab.now)
    assert not check.ok and "revoked" in check.reason


def test_wrong_crl_signer_rejected(lab: Lab) -> None:
    """A CRL whose signature does not verify with the configured signer is refused."""
    impostor = pki.make_policy_authority(lab.root, now=NOW)  # same name? no: fresh key
    forged = pki.make_crl(impostor, [], now=NOW)
    with pytest.raises(CrlError):
        load_crl(_pem(forged), lab.pa.cert)
    # Same subject, other key: issuer matches, signature does not.
    same_name = pki.Issued(lab.pa.cert, pki.new_key())
    with pytest.raises(CrlError, match="signature"):
        load_crl(_pem(pki.make_crl(same_name, [], now=NOW)), lab.pa.cert)


def test_crl_signer_must_chain_to_configured_pki(lab: Lab) -> None:
    """A self-made signer outside the trust anchors cannot sign CRLs for us."""
    other_root = pki.make_root(now=NOW)
    rogue_pa = pki.make_policy_authority(other_root, now=NOW)
    with pytest.raises(CrlError, match="not issued"):
        load_crl(
            _pem(pki.make_crl(rogue_pa, [], now=NOW)),
            rogue_pa.cert,
            trusted_issuers=[lab.root.cert],
        )


def test_expired_crl_fails_closed(lab: Lab) -> None:
    """Past nextUpdate the revocation status is unknown: the certificate is refused."""
    crl = pki.make_crl(lab.pa, [], now=NOW)
    store = _crl_store(lab, _pem(crl), lab.pa.cert)
    late = NOW + 2 * 86400
    check = store.validate([lab.operator.cert], late)
    assert not check.ok and "CRL expired" in check.reason


def test_expired_crl_fail_open_when_configured(lab: Lab) -> None:
    """crl_fail_open lets the certificate through with a stale CRL."""
    crl = pki.make_crl(lab.pa, [], now=NOW)
    store = _crl_store(lab, _pem(crl), lab.pa.cert, fail_open=True)
    assert store.validate([lab.operator.cert], NOW + 2 * 86400).ok


def test_fail_open_still_honours_revocations(lab: Lab) -> None:
    """fail-open is about unknown status only; a listed serial is still revoked."""
    crl = pki.make_crl(lab.pa, [(lab.inter.cert.subject, lab.operator.cert.serial_number)], now=NOW)
    store = _crl_store(lab, _pem(crl), lab.pa.cert, fail_open=True)
    assert not store.validate([lab.operator.cert], NOW + 2 * 86400).ok


def test_missing_crl_file_fails_closed(lab: Lab, tmp_path: Path) -> None:
    """A configured CRL file that does not exist makes every validation fail."""
    root = tmp_path / "root.pem"
    root.write_bytes(pki.pem(lab.root.cert))
    inter = tmp_path / "inter.pem"
    inter.write_bytes(pki.pem(lab.inter.cert))
    pa = tmp_path / "pa.pem"
    pa.write_bytes(pki.pem(lab.pa.cert))
    store = TrustStore.from_files([(root, None)], [inter], [(tmp_path / "nope.crl", pa)])
    check = store.validate([lab.operator.cert], lab.now)
    assert not check.ok and "revocation status unknown" in check.reason
    open_store = TrustStore.from_files(
        [(root, None)], [inter], [(tmp_path / "nope.crl", pa)], crl_fail_open=True
    )
    assert open_store.validate([lab.operator.cert], lab.now).ok


# Keys
def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, mode: int = 0o600) -> None:
    pki.write_private_key(path, key)
    os.chmod(path, mode)


def test_key_permission_refusal(lab: Lab, tmp_path: Path) -> None:
    """A key file readable by group or others is refused, naming the mode."""
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    cert.write_bytes(pki.pem(lab.operator.cert))
    for mode in (0o640, 0o604, 0o660):
        _write_key(key, lab.operator.key, mode)
        with pytest.raises(KeyLoadError, match="group/others"):
            load_credentials(key, cert)
    _write_key(key, lab.operator.key, 0o600)
    assert load_credentials(key, cert).cert == lab.operator.cert


def test_key_certificate_mismatch_refused(lab: Lab, tmp_path: Path) -> None:
    """A key that does not belong to the certificate is refused."""
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    cert.write_bytes(pki.pem(lab.operator.cert))
    _write_key(key, pki.new_key())
    with pytest.raises(KeyLoadError, match="does not match"):
        load_credentials(key, cert)


def test_key_errors_do_not_leak_material(lab: Lab, tmp_path: Path) -> None:
    """Errors and reprs never contain key bytes."""
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    cert.write_bytes(pki.pem(lab.operator.cert))
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nSECRETSECRET\n-----END PRIVATE KEY-----\n")
    os.chmod(key, 0o600)
    with pytest.raises(KeyLoadError) as info:
        load_credentials(key, cert)
    assert "SECRET" not in str(info.value) and info.value.__cause__ is None
    _write_key(key, lab.operator.key)
    creds = load_credentials(key, cert)
    pem_text = key.read_text()
    assert pem_text.splitlines()[1] not in repr(creds)
    assert "hidden" in repr(creds)


def test_non_p256_key_refused(tmp_path: Path) -> None:
    """A P-384 signing key is refused."""
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    root = pki.make_root(now=NOW)
    leaf = pki.make_operator(root, key=ec.generate_private_key(ec.SECP384R1()), now=NOW)
    cert.write_bytes(pki.pem(leaf.cert))
    _write_key(key, leaf.key)
    with pytest.raises(KeyLoadError, match="P-256"):
        load_credentials(key, cert)


# pki init
def test_pki_init_produces_a_chain_that_verifies(tmp_path: Path) -> None:
    """Files written by init build a trust store (with the indirect CRL) that accepts the leaf."""
    import time

    lab = pki.init_pki(tmp_path / "lab")
    for key in tmp_path.glob("lab/*.key"):
        assert (key.stat().st_mode & 0o777) == 0o600
    store = TrustStore.from_files(
        [(lab.root, None)], [lab.intermediate], [(lab.crl, lab.policy_authority)]
    )
    assert not store.crls.problems
    leaf = x509.load_pem_x509_certificate(lab.operator_cert.read_bytes())
    check = store.validate([leaf], time.time())
    assert check.ok, check.reason
    assert check.spc == lab.spc
    creds = load_credentials(lab.operator_key, lab.operator_cert)
    assert creds.cert == leaf
    crl = x509.load_pem_x509_crl(lab.crl.read_bytes())
    assert crl.issuer == x509.load_pem_x509_certificate(lab.policy_authority.read_bytes()).subject
    assert crl.issuer != leaf.issuer  # indirect: not signed by the leaf's issuer


# Settings
def test_signing_settings_validation(tmp_path: Path) -> None:
    """Enabled signing needs key/cert/x5u; x5u https; bypass needs a well-formed token."""
    with pytest.raises(ValidationError, match="key_file"):
        SigningSettings(enabled=True)
    with pytest.raises(ValidationError, match="https"):
        SigningSettings(x5u="http://a/c.cer")
    with pytest.raises(ValidationError, match="bypass_token"):
        SigningSettings(on_outage="bypass")
    with pytest.raises(ValidationError, match="SPC-RANDOM"):
        SigningSettings(on_outage="bypass", bypass_token="my-token")
    with pytest.raises(ValidationError, match="typo"):
        SigningSettings.model_validate({"typo": 1})
    ok = SigningSettings(on_outage="bypass", bypass_token="SPC000-YE42L73SGAG45I05")
    assert ok.attest_delegated == "A"


def test_origid_is_stable_per_source() -> None:
    """uuid5 of the namespace and source name, unless configured per source."""
    import uuid

    settings = SigningSettings(origids={"dialer": uuid.UUID(int=7)})
    assert settings.origid_for("pbx") == settings.origid_for("pbx")
    assert settings.origid_for("pbx") != settings.origid_for("pbx2")
    assert settings.origid_for("dialer") == str(uuid.UUID(int=7))


def test_trunk_verification_settings(tmp_path: Path) -> None:
    """Defaults construct (disabled); enabled needs anchors; shorthand anchors accepted."""
    assert TrunkVerification().enabled is False
    with pytest.raises(ValidationError, match="trust_anchors"):
        TrunkVerification(enabled=True)
    settings = TrunkVerification.model_validate(
        {
            "enabled": True,
            "trust_anchors": ["root.pem", {"file": "lab.pem", "tnauthlist_required": False}],
        }
    )
    assert settings.trust_anchors[1].tnauthlist_required is False
    assert settings.freshness == 60 and settings.mode == "annotate"
    with pytest.raises(ValidationError):
        TrunkVerification(bypass_tokens=["bad"])


def test_trust_store_from_settings(tmp_path: Path) -> None:
    """The verification settings build a working trust store from lab files."""
    import time

    lab = pki.init_pki(tmp_path)
    settings = TrunkVerification(
        enabled=True,
        trust_anchors=[{"file": lab.root}],  # type: ignore[list-item]
        intermediates=[lab.intermediate],
        crls=[{"file": lab.crl, "signer": lab.policy_authority}],  # type: ignore[list-item]
    )
    store = trust_store_from_settings(settings)
    leaf = x509.load_pem_x509_certificate(lab.operator_cert.read_bytes())
    assert store.validate([leaf], time.time()).ok


# Cache
@pytest.mark.parametrize(
    ("header", "ttl"),
    [
        (None, 3600),
        ("max-age=600", 600),
        ("public, max-age=5", 30),
        ("max-age=999999", 86400),
        ("no-store", 30),
        ("no-cache, max-age=600", 30),
    ],
)
def test_cache_ttl(header: str | None, ttl: int) -> None:
    """max-age honoured within [min, max]; no-store keeps only the minimum."""
    assert cache_ttl(header, default=3600, minimum=30, maximum=86400) == ttl


def test_cache_lru_and_expiry(lab: Lab) -> None:
    """Entries expire, the least recently used is evicted, failures are remembered briefly."""
    cache = CertCache(2, negative_ttl=10)
    body = pki.pem(lab.operator.cert)
    cache.put_bytes("a", body, 0, cache_control="max-age=100")
    cache.put_bytes("b", body, 0)
    assert cache.get("a", 50) is not None  # a is now most recent
    cache.put_failure("c", "boom", 0)
    assert cache.get("b", 50) is None  # evicted
    assert isinstance(cache.get("c", 5), CertUnavailable)
    assert cache.get("c", 11) is None
    assert cache.get("a", 101) is None  # expired
    bad = cache.put_bytes("d", b"not a certificate", 0)
    assert isinstance(bad, CertUnavailable)
