"""Operating sipguard under SIPp load: metrics, readiness, hot reload, drain (issue 5)."""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
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
    """/metrics counts INVITE 200s, policy verdicts and decisions taken from memory, shows the
    pinged trunk up; /healthz 200."""
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
        # The three calls present the same caller: the second and third are decided from
        # memory (published with the audit flush, every 0.5 s).
        assert wait_until(
            lambda: _metric(proxy, "sipguard_policy_memo_total", outcome="hit") >= 2, 5
        ), _admin(proxy, "/metrics")[1]
        assert _metric(proxy, "sipguard_policy_memo_total", outcome="miss") >= 1
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


def _count(proxy: ProxyProcess, event: str) -> int:
    """How many JSON log lines of the proxy have this `event`."""
    return sum(1 for line in proxy.log_text().splitlines() if f'"event": "{event}"' in line)


def _answered_invites(proxy: ProxyProcess) -> int:
    text = proxy.log_text()
    return text.count('"method": "INVITE", "source": "pbx", "trunk": "operator", "status": 200')


def test_reload_under_load_drops_no_call(
    tmp_path: Path, proxy_factory: Callable[..., ProxyProcess], ports: Callable[[], int]
) -> None:
    """SIGHUP, POST /reload and a rejected bad file during 200 held calls: none fails."""
    config = _config(tmp_path, ports, options_interval=600)
    proxy_port, trunk_port = _ports(config)
    uas = start_sipp(tmp_path, "uas_call.xml", local_port=trunk_port, calls=200, trace_msg=False)
    proxy = proxy_factory(config)
    uac = start_sipp(tmp_path, "uac_call.xml", local_port=ports(), trace_msg=False,
                     remote=("127.0.0.1", proxy_port), calls=200,
                     extra_args=["-r", "20", "-d", "1000", "-l", "40"])
    with running(uac, uas):
        assert wait_until(lambda: _answered_invites(proxy) >= 30, 20), proxy.log_text()
        proxy.signal(signal.SIGHUP)
        assert wait_until(lambda: _count(proxy, "reload.done") == 1, 10), proxy.log_text()
        assert _admin(proxy, "/reload", method="POST")[0] == 401
        assert _admin(proxy, "/reload", method="POST", token="wrong")[0] == 401
        status, body = _admin(proxy, "/reload", method="POST", token=TOKEN)
        assert (status, json.loads(body)) == (200, {"reloaded": True}), body
        assert _count(proxy, "reload.done") == 2
        bad = dict(config, routing={"drain_seconds": -1})
        proxy.config_path.write_text(yaml.safe_dump(bad, sort_keys=False))
        proxy.signal(signal.SIGHUP)
        assert wait_until(lambda: _count(proxy, "reload.failed") == 1, 10), proxy.log_text()
        assert uac.process.poll() is None, "the reloads must happen while calls are running"
        uac_rc, uas_rc = uac.wait(60), uas.wait(30)
        assert uac_rc == 0, uac.report() + proxy.log_text()[-4000:]
        assert uas_rc == 0, uas.report()
    failed = next(line for line in proxy.log_text().splitlines() if "reload.failed" in line)
    assert proxy.config_path.name in failed and "drain_seconds" in failed, failed
    assert _answered_invites(proxy) == 200
    assert _metric(proxy, "sipguard_reloads_total", result="ok") == 2
    assert _metric(proxy, "sipguard_reloads_total", result="failed") == 1


def _invite(host: str, port: int, timeout: float = 2.0) -> bytes | None:
    """Send one INVITE from the pbx source over UDP; return its final answer (ACKed if non-2xx)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        local = sock.getsockname()[1]
        branch = "z9hG4bK" + uuid.uuid4().hex
        common = (
            f"Via: SIP/2.0/UDP {host}:{local};branch={branch}\r\n"
            f"From: <sip:+33162000001@{host};user=phone>;tag=late\r\n"
            f"Call-ID: {uuid.uuid4().hex}@late\r\nMax-Forwards: 70\r\n"
        )
        to = f"To: <sip:service@{host}:{port};user=phone>"
        invite = (f"INVITE sip:service@{host}:{port} SIP/2.0\r\n{common}{to}\r\n"
                  f"CSeq: 1 INVITE\r\nContact: <sip:late@{host}:{local}>\r\n"
                  "Content-Length: 0\r\n\r\n")
        sock.settimeout(timeout)
        sock.sendto(invite.encode(), (host, port))
        while True:
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                return None
            status = int(data.split(b" ", 2)[1])
            if status >= 200:
                break
        if status >= 300:
            tag = re.search(rb"^To:.*$", data, re.MULTILINE | re.IGNORECASE)
            to_line = tag.group(0).decode().strip() if tag else to
            ack = (f"ACK sip:service@{host}:{port} SIP/2.0\r\n{common}{to_line}\r\n"
                   "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
            sock.sendto(ack.encode(), (host, port))
        return data


def test_sigterm_drains_held_calls_then_exits(
    tmp_path: Path, proxy_factory: Callable[..., ProxyProcess], ports: Callable[[], int]
) -> None:
    """SIGTERM: held calls get their BYEs through, new INVITEs get 503, exit 0 before deadline."""
    drain, calls = 10.0, 10
    config = _config(tmp_path, ports, options_interval=600)
    config["routing"] = {"drain_seconds": drain, "retry_after": 7}
    proxy_port, trunk_port = _ports(config)
    uas = start_sipp(tmp_path, "uas_call.xml", local_port=trunk_port, calls=calls)
    proxy = proxy_factory(config)
    # Every call is held 3 s after its ACK, so all are in progress when SIGTERM arrives.
    uac = start_sipp(tmp_path, "uac_call.xml", local_port=ports(), calls=calls,
                     remote=("127.0.0.1", proxy_port), extra_args=["-r", "20", "-d", "3000"])
    with running(uac, uas):
        assert wait_until(lambda: _answered_invites(proxy) == calls, 10), proxy.log_text()
        assert "BYE" not in proxy.log_text(), "the calls must still be up at SIGTERM"
        sigterm = time.monotonic()
        proxy.signal(signal.SIGTERM)
        assert wait_until(lambda: _count(proxy, "drain.started") == 1, 5), proxy.log_text()
        refused = _invite("127.0.0.1", proxy_port)
        assert refused is not None and refused.startswith(b"SIP/2.0 503 "), refused
        assert b"\r\nRetry-After: 7\r\n" in refused, refused
        assert uac.wait(30) == 0, uac.report() + proxy.log_text()
        assert uas.wait(30) == 0, uas.report()
        code = proxy.process.wait(drain + 10)
        elapsed = time.monotonic() - sigterm
    assert code == 0, proxy.log_text()
    # Finished when the last BYE was answered, not at the deadline.
    assert elapsed < drain - 2, (elapsed, proxy.log_text())
    assert proxy.log_text().count('"method": "BYE", "source": "pbx", "trunk": "operator", '
                                  '"status": 200') == calls
    with sqlite3.connect(config["policy"]["audit"]["database"]) as db:
        (audited,) = db.execute(
            "SELECT count(DISTINCT call_id) FROM decisions WHERE method = 'INVITE'"
        ).fetchone()
    assert audited == calls
