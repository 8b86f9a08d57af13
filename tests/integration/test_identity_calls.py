"""MAN signing and verification through the running proxy with real SIPp peers (issue 4 §6).

Outbound: SIPp UAC (a source) -> sipguard signing -> SIPp UAS (the trunk); the Identity header
the UAS received is checked by secsipidx and by `sipguard identity verify`.
Inbound: SIPp UAC on the trunk's address -> sipguard verification (annotate) -> SIPp UAS (the
PBX); the certificate is fetched from a local HTTPS x5u server over the lab PKI.
"""

from __future__ import annotations

import base64
import http.server
import json
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization

from proxy.policy.numbers import NumberRange, NumberStore
from stir_shaken import pki
from stir_shaken.settings import DEFAULT_ORIGID_NAMESPACE
from stir_shaken.signer import Signer
from tests.integration.conftest import quick_config
from tests.integration.harness import (
    ProxyProcess,
    free_port,
    header_values,
    received_messages,
    require_tool,
    run_cli,
    running,
    start_sipp,
)

pytestmark = pytest.mark.sipp

CALLER = "+33162000001"
CALLER_TN = "33162000001"
CALLEE = "+33187654321"
CALLEE_TN = "33187654321"
SIPP_TIMEOUT = 10.0

Factory = Callable[..., ProxyProcess]


@dataclass
class Lab:
    """A lab PKI made by `sipguard pki init` and an HTTPS server publishing its x5u."""

    directory: Path
    x5u: str
    hits: list[str] = field(default_factory=list)

    def path(self, name: str) -> Path:
        """A file of the lab PKI."""
        return self.directory / name

    def signer(self) -> Signer:
        """Our signer with the lab operator key and x5u."""
        key = serialization.load_pem_private_key(
            self.path("operator.key").read_bytes(), password=None
        )
        return Signer(key, self.x5u)  # type: ignore[arg-type]


def _serve(lab: Lab, port: int) -> http.server.ThreadingHTTPServer:
    """Serve the operator certificate (PEM) at the x5u path over HTTPS with the lab TLS cert."""
    body = lab.path("operator.pem").read_bytes()
    wanted = urlsplit(lab.x5u).path

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            lab.hits.append(self.path)
            if self.path != wanted:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/pem-certificate-chain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(lab.path("tls.pem"), lab.path("tls.key"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="x5u", daemon=True).start()
    return server


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """`sipguard pki init` in a temporary directory, its x5u served on a local HTTPS port."""
    directory = tmp_path_factory.mktemp("lab-pki")
    port = free_port(socket.SOCK_STREAM)
    result = run_cli("pki", "init", str(directory), "--x5u-base", f"https://127.0.0.1:{port}")
    assert result.returncode == 0, result.stdout + result.stderr
    x5u = next(
        line.split()[-1] for line in result.stdout.splitlines() if "suggested x5u" in line
    )
    made = Lab(directory, x5u)
    server = _serve(made, port)
    try:
        yield made
    finally:
        server.shutdown()
        server.server_close()


def _secsipidx(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("secsipidx")
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=30, check=False
    )


def _secsipidx_ok(value: str, cert: Path) -> bool:
    """secsipidx -check with the certificate given directly (-expire 60: its default is 0 s)."""
    result = _secsipidx("-check", "-expire", "60", "-identity", value, "-fpubkey", str(cert))
    return result.returncode == 0 and result.stdout.strip().endswith("ok")


def _secsipidx_sign(lab: Lab, orig: str, *, iat: int | None = None) -> str:
    """A full Identity value signed by secsipidx with the lab operator key."""
    result = _secsipidx(
        "-sign-full", "-k", str(lab.path("operator.key")), "-x5u", lab.x5u, "-o", orig,
        "-d", CALLEE_TN, "-a", "A", "-orig-id", str(uuid.uuid4()),
        "-iat", str(iat if iat is not None else int(time.time())),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _claims(value: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The decoded (header, claims) of an Identity value."""
    token = value.split(";", 1)[0].strip()
    header, payload, _ = token.split(".")

    def decode(part: str) -> dict[str, Any]:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]

    return decode(header), decode(payload)


def _list_caller(config: dict[str, Any]) -> None:
    """The customer holds CALLER (its own list: attest A)."""
    with NumberStore(config["policy"]["database"]) as store:
        store.add_holding("acme-contact", NumberRange.parse(CALLER))


def _signing_config(tmp_path: Path, lab: Lab) -> dict[str, Any]:
    config = quick_config(tmp_path, proxy_port=free_port(), trunk_port=free_port())
    config["signing"] = {
        "enabled": True,
        "key_file": str(lab.path("operator.key")),
        "cert_file": str(lab.path("operator.pem")),
        "chain": [str(lab.path("intermediate.pem"))],
        "x5u": lab.x5u,
    }
    # A signed INVITE is over 1300 bytes: without udp_only the proxy moves it to TCP
    # (RFC 3261 §18.1.1), which this SIPp trunk does not listen on.
    config["trunks"][0]["udp_only"] = True
    return config


def _outbound(
    tmp_path: Path, proxy_factory: Factory, config: dict[str, Any], *,
    scenario: str = "uac_call.xml", keys: dict[str, str] | None = None,
) -> str:
    """A call source -> trunk from CALLER to CALLEE; returns the INVITE the trunk received."""
    proxy_port, trunk_port = config["listen"][0]["port"], config["trunks"][0]["port"]
    uas = start_sipp(tmp_path, "uas_call.xml", local_port=trunk_port, timeout=SIPP_TIMEOUT)
    with running(uas):
        proxy = proxy_factory(config)
        uac = start_sipp(
            tmp_path, scenario, local_port=free_port(), remote=("127.0.0.1", proxy_port),
            keys={"from_user": CALLER, "pai_user": CALLER, **(keys or {})},
            extra_args=("-s", CALLEE), timeout=SIPP_TIMEOUT,
        )
        with running(uac):
            uac_rc = uac.wait(SIPP_TIMEOUT + 5)
            uas_rc = uas.wait(SIPP_TIMEOUT + 5)
    assert uac_rc == 0, uac.report() + proxy.log_text()
    assert uas_rc == 0, uas.report() + proxy.log_text()
    invites = received_messages(uas.messages(), "INVITE ")
    assert len(invites) == 1, uas.messages()
    return invites[0]


def _our_verdict(lab: Lab, value: str) -> subprocess.CompletedProcess[str]:
    """`sipguard identity verify` with the lab trust anchor, intermediate and indirect CRL."""
    return run_cli(
        "identity", "verify", value, "--from", CALLER, "--to", CALLEE,
        "--cert", str(lab.path("operator.pem")),
        "--trust-anchor", str(lab.path("root.pem")),
        "--intermediate", str(lab.path("intermediate.pem")),
        "--crl", str(lab.path("crl.pem")), "--crl-signer", str(lab.path("pa.pem")),
    )


def _check_ours(lab: Lab, value: str) -> dict[str, Any]:
    """Assert `value` is our attest-A signature of CALLER -> CALLEE; returns its claims."""
    header, claims = _claims(value)
    assert header == {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": lab.x5u}
    assert claims["attest"] == "A"
    assert claims["orig"] == {"tn": CALLER_TN}
    assert claims["dest"] == {"tn": [CALLEE_TN]}
    assert claims["origid"] == str(uuid.uuid5(DEFAULT_ORIGID_NAMESPACE, "pbx"))
    assert abs(claims["iat"] - time.time()) < 60
    assert _secsipidx_ok(value, lab.path("operator.pem")), value
    ours = _our_verdict(lab, value)
    assert ours.returncode == 0, ours.stdout + ours.stderr
    assert "verdict: PASS (attest A" in ours.stdout
    return claims


@pytest.mark.secsipidx
def test_signed_invite_verified_by_secsipidx_and_sipguard(
    tmp_path: Path, proxy_factory: Factory, lab: Lab
) -> None:
    """Signing on, caller on the customer's own list: one attest-A Identity both tools accept."""
    config = _signing_config(tmp_path, lab)
    _list_caller(config)
    invite = _outbound(tmp_path, proxy_factory, config)
    identities = header_values(invite, "Identity")
    assert len(identities) == 1, invite
    assert header_values(invite, "Date"), "signing adds Date when absent"
    _check_ours(lab, identities[0])
    # Tampering is noticed by both verifiers (the checks above can fail).
    token, params = identities[0].split(";", 1)
    signed, signature = token.rsplit(".", 1)
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    tampered = f"{signed}.{flipped};{params}"
    assert not _secsipidx_ok(tampered, lab.path("operator.pem"))
    assert _our_verdict(lab, tampered).returncode == 1


@pytest.mark.secsipidx
def test_source_identity_replaced_by_ours(
    tmp_path: Path, proxy_factory: Factory, lab: Lab
) -> None:
    """An untrusted source's own Identity is removed; the trunk gets only ours."""
    config = _signing_config(tmp_path, lab)
    _list_caller(config)
    forged = Signer(pki.new_key(), "https://forged.example/cert.pem").sign_shaken(
        orig=CALLER_TN, dest=CALLEE_TN, attest="A", iat=int(time.time()), origid="forged"
    )
    invite = _outbound(
        tmp_path, proxy_factory, config, scenario="uac_identity.xml", keys={"identity": forged}
    )
    identities = header_values(invite, "Identity")
    assert len(identities) == 1, invite
    assert identities[0] != forged
    assert "forged.example" not in invite
    _check_ours(lab, identities[0])


# --- inbound: trunk -> PBX with verification in annotate mode ---------------------------------


def _inbound_config(tmp_path: Path, lab: Lab) -> dict[str, Any]:
    config = quick_config(
        tmp_path, proxy_port=free_port(), trunk_port=free_port(), pbx_port=free_port()
    )
    config["trunks"][0]["verification"] = {
        "enabled": True,
        "mode": "annotate",
        "trust_anchors": [str(lab.path("root.pem"))],
        "intermediates": [str(lab.path("intermediate.pem"))],
        "crls": [{"file": str(lab.path("crl.pem")), "signer": str(lab.path("pa.pem"))}],
        "allow_private_x5u": True,
        "x5u_tls_ca_file": str(lab.path("root.pem")),
        "fetch_connect_timeout": 2.0,
        "fetch_read_timeout": 2.0,
    }
    return config


def _inbound(
    tmp_path: Path, proxy_factory: Factory, config: dict[str, Any], identity: str
) -> tuple[str, str]:
    """A call from the trunk's address to the PBX carrying `identity`.

    Returns (the INVITE the PBX received, everything the trunk side received)."""
    proxy_port = config["listen"][0]["port"]
    trunk_port = config["trunks"][0]["port"]
    pbx_port = config["sources"][0]["pbx"]["port"]
    uas = start_sipp(tmp_path, "uas_call.xml", local_port=pbx_port, timeout=SIPP_TIMEOUT)
    with running(uas):
        proxy = proxy_factory(config)
        uac = start_sipp(
            tmp_path, "uac_identity.xml", local_port=trunk_port,
            remote=("127.0.0.1", proxy_port),
            keys={"from_user": CALLER, "pai_user": CALLER, "identity": identity},
            extra_args=("-s", CALLEE), timeout=SIPP_TIMEOUT,
        )
        with running(uac):
            uac_rc = uac.wait(SIPP_TIMEOUT + 5)
            uas_rc = uas.wait(SIPP_TIMEOUT + 5)
    assert uac_rc == 0, uac.report() + proxy.log_text()
    assert uas_rc == 0, uas.report() + proxy.log_text()
    invites = received_messages(uas.messages(), "INVITE ")
    assert len(invites) == 1, uas.messages()
    return invites[0], uac.messages()


def _verstat(invite: str) -> str:
    (pai,) = header_values(invite, "P-Asserted-Identity")
    assert f"<sip:{CALLER};verstat=" in pai, pai
    return pai.split("verstat=", 1)[1].split("@", 1)[0]


@pytest.mark.secsipidx
def test_inbound_secsipidx_identity_passes(
    tmp_path: Path, proxy_factory: Factory, lab: Lab
) -> None:
    """A secsipidx-signed call from the trunk reaches the PBX with TN-Validation-Passed."""
    fetched = len(lab.hits)
    value = _secsipidx_sign(lab, CALLER_TN)
    invite, _ = _inbound(tmp_path, proxy_factory, _inbound_config(tmp_path, lab), value)
    assert _verstat(invite) == "TN-Validation-Passed"
    assert "verstat" not in header_values(invite, "From")[0]
    assert urlsplit(lab.x5u).path in lab.hits[fetched:], "certificate fetched over HTTPS"


def test_inbound_stale_iat_fails(tmp_path: Path, proxy_factory: Factory, lab: Lab) -> None:
    """iat an hour old (our signer, lab key): the PBX sees TN-Validation-Failed."""
    value = lab.signer().sign_shaken(
        orig=CALLER_TN, dest=CALLEE_TN, attest="A", iat=int(time.time()) - 3600, origid="x"
    )
    invite, _ = _inbound(tmp_path, proxy_factory, _inbound_config(tmp_path, lab), value)
    assert _verstat(invite) == "TN-Validation-Failed"


@pytest.mark.secsipidx
def test_inbound_wrong_orig_fails(tmp_path: Path, proxy_factory: Factory, lab: Lab) -> None:
    """A valid signature for another calling number: the PBX sees TN-Validation-Failed."""
    value = _secsipidx_sign(lab, "33162000002")
    invite, _ = _inbound(tmp_path, proxy_factory, _inbound_config(tmp_path, lab), value)
    assert _verstat(invite) == "TN-Validation-Failed"


def test_inbound_failure_reported_upstream_in_annotate_mode(
    tmp_path: Path, proxy_factory: Factory, lab: Lab
) -> None:
    """A failed verification in annotate mode puts Reason: SIP;cause=403 on the trunk's 200."""
    value = lab.signer().sign_shaken(
        orig=CALLER_TN, dest=CALLEE_TN, attest="A", iat=int(time.time()) - 3600, origid="x"
    )
    _, upstream = _inbound(tmp_path, proxy_factory, _inbound_config(tmp_path, lab), value)
    (ok,) = received_messages(upstream, "SIP/2.0 200 ")[:1]
    reasons = header_values(ok, "Reason")
    assert any(r.startswith("SIP;cause=403") for r in reasons), ok
