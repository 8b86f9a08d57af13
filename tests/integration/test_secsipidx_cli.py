"""Interop with secsipidx, the independent implementation (checklist §10).

secsipidx must verify what we sign, we must verify what it signs, and we must REJECT what it
wrongly accepts (future iat, attest D, '+' in a TN, http x5u, missing ppt, no TNAuthList, padded
base64url). Its OK is necessary, not sufficient.

When secsipidx is missing: skipped locally, a failure under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509

from stir_shaken import pki
from stir_shaken.certs import TrustAnchor, TrustStore
from stir_shaken.signer import Signer
from stir_shaken.verifier import CertUnavailable, VerificationResult, Verifier

pytestmark = pytest.mark.secsipidx

SECSIPIDX = shutil.which("secsipidx")
ORIG, DEST = "33612345678", "33187654321"
X5U = "https://127.0.0.1:8443/certs/LAB001/01.cer"


@pytest.fixture(scope="module", autouse=True)
def _need_secsipidx() -> None:
    if SECSIPIDX is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("secsipidx is required in CI (Debian package 'secsipidx')")
        pytest.skip("secsipidx not installed (apt-get install secsipidx); interop not checked")


class LabFiles:
    """A lab PKI on disk plus a no-TNAuthList operator certificate."""

    def __init__(self, directory: Path) -> None:
        self.lab = pki.init_pki(directory)
        self.dir = directory
        self.leaf = x509.load_pem_x509_certificate(self.lab.operator_cert.read_bytes())
        root_issued = pki.Issued(
            x509.load_pem_x509_certificate(self.lab.root.read_bytes()),
            _load_key(directory / "root.key"),
        )
        inter_issued = pki.Issued(
            x509.load_pem_x509_certificate(self.lab.intermediate.read_bytes()),
            _load_key(directory / "intermediate.key"),
        )
        self.root = root_issued
        bare = pki.make_operator(inter_issued, None)
        self.bare_cert = bare.cert
        (directory / "bare.pem").write_bytes(pki.pem(bare.cert))
        pki.write_private_key(directory / "bare.key", bare.key)
        self.trust = TrustStore([TrustAnchor(root_issued.cert)], [inter_issued.cert])

    def verify(
        self, value: str, *, now: float | None = None, cert: x509.Certificate | None = None
    ) -> VerificationResult:
        """Our verdict on `value` with the operator (or given) certificate at any x5u."""
        chain = [cert or self.leaf]

        def lookup(_: str) -> list[x509.Certificate] | CertUnavailable:
            return chain

        return Verifier(self.trust).verify(
            [value], orig_tn=ORIG, dest_tn=DEST, now=now or time.time(), lookup=lookup
        )


def _load_key(path: Path) -> object:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(path.read_bytes(), password=None)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> LabFiles:
    """The lab PKI for this module."""
    return LabFiles(tmp_path_factory.mktemp("secsipidx-lab"))


def secsipidx(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run secsipidx with a timeout; no shell."""
    assert SECSIPIDX is not None
    return subprocess.run(
        [SECSIPIDX, *args], capture_output=True, text=True, timeout=30, check=False, env=env
    )


def secsipidx_check(value: str, cert: Path) -> bool:
    """secsipidx -check with the certificate given directly.

    `-expire 60`: its default window is 0 s, so a check in the next second says "expired".
    """
    result = secsipidx("-check", "-expire", "60", "-identity", value, "-fpubkey", str(cert))
    return result.returncode == 0 and result.stdout.strip().endswith("ok")


def secsipidx_sign(files: LabFiles, *, key: str = "operator.key", **kw: str) -> str:
    """secsipidx -sign-full with our lab key."""
    options = {"x5u": X5U, "o": ORIG, "d": DEST, "a": "A", "orig-id": "x"}
    options["iat"] = str(int(time.time()))
    options.update(kw)
    args = ["-sign-full", "-k", str(files.dir / key)]
    for name, value in options.items():
        args += [f"-{name}", value]
    result = secsipidx(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_secsipidx_verifies_what_we_sign(files: LabFiles) -> None:
    """20 of our PASSporTs (any r/s length) pass secsipidx -check; a tampered one does not."""
    signer = Signer(pki.Issued(files.leaf, _load_key(files.lab.operator_key)).key, X5U)  # type: ignore[arg-type]
    for index in range(20):
        value = signer.sign_shaken(
            orig=ORIG,
            dest=DEST,
            attest="ABC"[index % 3],
            iat=int(time.time()),
            origid=str(index),  # type: ignore[arg-type]
        )
        assert secsipidx_check(value, files.lab.operator_cert), value
    token, params = value.split(";", 1)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB") + ";" + params
    assert not secsipidx_check(tampered, files.lab.operator_cert)


def test_byte_identical_to_secsipidx(files: LabFiles) -> None:
    """Same claims -> same header and claims bytes as secsipidx (checklist §10)."""
    iat = str(int(time.time()))
    theirs = secsipidx_sign(files, iat=iat, **{"orig-id": "abc"})
    signer = Signer(_load_key(files.lab.operator_key), X5U)  # type: ignore[arg-type]
    ours = signer.sign_shaken(orig=ORIG, dest=DEST, attest="A", iat=int(iat), origid="abc")
    assert ours.split(".")[:2] == theirs.split(".")[:2]
    assert ours.split(";", 1)[1] == theirs.split(";", 1)[1]


def test_we_verify_what_secsipidx_signs(files: LabFiles) -> None:
    """A secsipidx -sign-full Identity passes our verifier with the lab chain."""
    value = secsipidx_sign(files)
    result = files.verify(value)
    assert result.ok, result.reason
    assert result.spc == files.lab.spc


# What secsipidx accepts and a MAN verifier must refuse (checklist §10).
def test_reject_future_iat(files: LabFiles) -> None:
    """iat one hour ahead (signed by secsipidx from raw JSON): secsipidx ok, we 403."""
    header = json.dumps({"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": X5U})
    claims = {"attest": "A", "dest": {"tn": [DEST]}, "iat": int(time.time()) + 3600}
    payload = json.dumps({**claims, "orig": {"tn": ORIG}, "origid": "x"})
    signed = secsipidx(
        "-s", "-k", str(files.lab.operator_key), "-header", header, "-payload", payload
    )
    assert signed.returncode == 0, signed.stderr
    value = f"{signed.stdout.strip()};info=<{X5U}>;alg=ES256;ppt=shaken"
    assert secsipidx_check(value, files.lab.operator_cert)
    assert files.verify(value).code == 403


def test_reject_attest_d(files: LabFiles) -> None:
    """attest D: secsipidx ok, we 438."""
    value = secsipidx_sign(files, a="D")
    assert secsipidx_check(value, files.lab.operator_cert)
    assert files.verify(value).code == 438


def test_reject_plus_in_tn(files: LabFiles) -> None:
    """orig '+33…': secsipidx ok, we 438."""
    value = secsipidx_sign(files, o="+" + ORIG)
    assert secsipidx_check(value, files.lab.operator_cert)
    assert files.verify(value).code == 438


def test_reject_http_x5u(files: LabFiles) -> None:
    """http x5u: secsipidx ok, we 436."""
    value = secsipidx_sign(files, x5u="http://127.0.0.1:8080/c.cer")
    assert secsipidx_check(value, files.lab.operator_cert)
    assert files.verify(value).code == 436


def test_reject_missing_ppt(files: LabFiles) -> None:
    """No ppt parameter: secsipidx ok, we 438."""
    value = secsipidx_sign(files)
    assert value.endswith(";ppt=shaken")
    stripped = value.removesuffix(";ppt=shaken")
    assert secsipidx_check(stripped, files.lab.operator_cert)
    assert files.verify(stripped).code == 438


def test_reject_no_tnauthlist(files: LabFiles) -> None:
    """Certificate without TNAuthList: secsipidx ok, we 437."""
    value = secsipidx_sign(files, key="bare.key")
    assert secsipidx_check(value, files.dir / "bare.pem")
    assert files.verify(value, cert=files.bare_cert).code == 437


def test_reject_padded_base64url(files: LabFiles) -> None:
    """'=' padding on the signature segment: secsipidx ok, we 438."""
    value = secsipidx_sign(files)
    token, params = value.split(";", 1)
    signature = token.rsplit(".", 1)[1]
    padded = token + "=" * (-len(signature) % 4) + ";" + params
    assert padded != value
    assert secsipidx_check(padded, files.lab.operator_cert)
    assert files.verify(padded).code == 438
