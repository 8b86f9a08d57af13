"""The proxy serves its own certificate chain at the x5u path over HTTPS for labs (issue 4 §4),
and what it serves is what a verifier fetches: our own x5u fetcher reads it back."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from stir_shaken.cache import CertCache
from stir_shaken.fetch import X5uFetcher
from tests.integration.conftest import base_config
from tests.integration.harness import ProxyProcess, free_port, run_cli, tcp_listening, wait_until

pytestmark = pytest.mark.sipp


def test_lab_x5u_server_publishes_the_chain_and_crl(
    tmp_path: Path, proxy_factory: Callable[..., ProxyProcess], ports: Callable[[], int]
) -> None:
    """GET x5u returns operator + intermediate certificates; GET /crl the lab CRL."""
    lab = tmp_path / "pki"
    port = free_port(socket.SOCK_STREAM)
    made = run_cli("pki", "init", str(lab), "--x5u-base", f"https://127.0.0.1:{port}")
    assert made.returncode == 0, made.stderr
    x5u = next(line.split()[-1] for line in made.stdout.splitlines() if "suggested x5u" in line)
    config = base_config(tmp_path, proxy_port=ports(), trunk_port=ports(), rules_off=True)
    config["signing"] = {
        "enabled": True,
        "key_file": str(lab / "operator.key"),
        "cert_file": str(lab / "operator.pem"),
        "chain": [str(lab / "intermediate.pem")],
        "x5u": x5u,
        "lab_x5u_server": {"host": "127.0.0.1", "port": port,
                           "tls_cert_file": str(lab / "tls.pem"),
                           "tls_key_file": str(lab / "tls.key"),
                           "crl_file": str(lab / "crl.pem"), "max_age": 600},
    }
    proxy = proxy_factory(config)
    assert wait_until(lambda: tcp_listening("127.0.0.1", port), 10), proxy.log_text()

    context = ssl.create_default_context(cafile=str(lab / "root.pem"))

    async def fetch() -> object:
        fetcher = X5uFetcher(CertCache(), allow_private=True, ssl_context=context)
        try:
            return await fetcher.fetch(x5u, time.time())
        finally:
            await fetcher.close()

    certificates = asyncio.run(fetch())
    assert isinstance(certificates, tuple | list), certificates
    expected = [x509.load_pem_x509_certificate((lab / name).read_bytes())
                for name in ("operator.pem", "intermediate.pem")]
    assert list(certificates) == expected

    with urllib.request.urlopen(f"https://127.0.0.1:{port}/crl", context=context,
                                timeout=5) as response:
        assert response.read() == (lab / "crl.pem").read_bytes()
        assert response.headers["Cache-Control"] == "max-age=600"
