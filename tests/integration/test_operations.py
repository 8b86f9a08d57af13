"""Operating sipguard under SIPp load: metrics, readiness, hot reload, drain (issue 5)."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import base_config
from tests.integration.harness import ProxyProcess, running, start_sipp, wait_until

pytestmark = pytest.mark.sipp

TOKEN = "s3cret-reload-token"
MANY = 100000  # -m for a SIPp trunk that also answers pings: each ping is one SIPp "call"


# --- helpers -----------------------------------------------------------------------------------


def _config(tmp_path: Path, ports: Callable[[], int], **trunk: Any) -> dict[str, Any]:
    """base_config (rules off) with the admin listener on a free loopback port and a token."""
    config = base_config(tmp_path, proxy_port=ports(), trunk_port=ports(), rules_off=True)
    config["admin"] = {"enabled": True, "host": "127.0.0.1", "port": ports(), "token": TOKEN}
    config["trunks"][0].update(trunk)
    return config


def _ports(config: dict[str, Any]) -> tuple[int, int]:
    return int(config["listen"][0]["port"]), int(config["trunks"][0]["port"])


def _admin(proxy: ProxyProcess, path: str, *, method: str = "GET",
           token: str | None = None) -> tuple[int, str]:
    """One admin HTTP request; returns (status, body)."""
    request = urllib.request.Request(f"http://127.0.0.1:{proxy.admin_port}{path}", method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _metric(proxy: ProxyProcess, name: str, **labels: str) -> float:
    """The sum of every sample of `name` whose labels include `labels` (0 when absent)."""
    status, text = _admin(proxy, "/metrics")
    assert status == 200, text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _ready(proxy: ProxyProcess) -> tuple[int, dict[str, Any]]:
    status, body = _admin(proxy, "/readyz")
    return status, json.loads(body)


class OptionsResponder:
    """A UDP trunk that answers OPTIONS 200 until `mute()`; it never takes a call."""

    def __init__(self, port: int) -> None:
        self.answering = True
        self.pings = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", port))
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, remote = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data.startswith(b"OPTIONS "):
                continue
            self.pings += 1
            if self.answering:
                head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
                keep = (b"via:", b"v:", b"from:", b"f:", b"to:", b"t:", b"call-id:", b"i:",
                        b"cseq:")
                lines = [line for line in head if line.lower().startswith(keep)]
                reply = b"\r\n".join([b"SIP/2.0 200 OK", *lines, b"Content-Length: 0", b"", b""])
                self._sock.sendto(reply, remote)

    def mute(self) -> None:
        """Stop answering: the trunk looks dead to the proxy's pings."""
        self.answering = False

    def close(self) -> None:
        """Stop the thread and free the port."""
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


# --- tests -------------------------------------------------------------------------------------


def test_metrics_move_under_sipp_calls(tmp_path: Path, proxy_factory: Callable[..., ProxyProcess],
                                       ports: Callable[[], int]) -> None:
    """/metrics counts INVITE 200s and policy verdicts, shows the pinged trunk up; /healthz 200."""
    config = _config(tmp_path, ports, options_interval=0.5)
    proxy_port, trunk_port = _ports(config)
    uas = start_sipp(tmp_path, "uas_call_options.xml", local_port=trunk_port, calls=MANY)
    proxy = proxy_factory(config)
    with running(uas):
        assert _admin(proxy, "/healthz")[0] == 200
        # At least two pings answered: the trunk was monitored, not just presumed up.
        assert wait_until(lambda: "OPTIONS sip:" in uas.messages()
                          and uas.messages().count("SIP/2.0 200 OK") >= 2, 10), uas.report()
        labels = {"method": "INVITE", "status": "200", "origin": "pbx", "trunk": "operator"}
        invites = _metric(proxy, "sipguard_transactions_total", **labels)
        verdicts = _metric(proxy, "sipguard_policy_verdicts_total", source="pbx")
        uac = start_sipp(tmp_path, "uac_call.xml", local_port=ports(),
                         remote=("127.0.0.1", proxy_port), calls=3)
        with running(uac):
            assert uac.wait(40) == 0, uac.report() + proxy.log_text()
        assert _metric(proxy, "sipguard_transactions_total", **labels) == invites + 3
        assert _metric(proxy, "sipguard_policy_verdicts_total", source="pbx") == verdicts + 3
        assert _metric(proxy, "sipguard_trunk_up", trunk="operator") == 1, proxy.log_text()
        assert _admin(proxy, "/healthz")[0] == 200


def test_readyz_flips_when_the_trunk_stops_answering(
    tmp_path: Path, proxy_factory: Callable[..., ProxyProcess], ports: Callable[[], int]
) -> None:
    """/readyz is 200 while the trunk answers OPTIONS and 503 once it stops."""
    config = _config(tmp_path, ports, options_interval=0.3, options_failures=1)
    # A ping fails on Timer F (64*T1): a short T1 makes that 3.2 s.
    config["timers"].update({"t1": 0.05, "t2": 0.4, "t4": 0.5})
    _, trunk_port = _ports(config)
    trunk = OptionsResponder(trunk_port)
    try:
        proxy = proxy_factory(config)
        assert wait_until(lambda: trunk.pings >= 2, 10)
        status, body = _ready(proxy)
        assert status == 200, body
        assert _metric(proxy, "sipguard_trunk_up", trunk="operator") == 1
        trunk.mute()
        assert wait_until(lambda: _ready(proxy)[0] == 503, 10), proxy.log_text()
        status, body = _ready(proxy)
        assert body["checks"]["trunk_up"] is False, body
        assert _metric(proxy, "sipguard_trunk_up", trunk="operator") == 0
    finally:
        trunk.close()
