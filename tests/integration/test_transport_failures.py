"""Connection failures towards trunks, with real SIPp peers (issue 2 §3, §4).

* A UDP trunk that only listens on UDP gets a request larger than 1300 bytes: sipguard tries
  TCP first (RFC 3261 §18.1.1), the connection is refused, and the same request is sent again
  over UDP: the call completes.
* A TCP trunk with nothing listening: the refused connection is a 503 from that branch
  (§16.9), so the call moves to the UDP backup at once instead of after Timer B (32 s).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import base_config
from tests.integration.harness import (
    ProxyProcess,
    Sipp,
    free_port,
    header_values,
    log_events,
    received_messages,
    running,
    scenario_variant,
    start_sipp,
)

pytestmark = pytest.mark.sipp

HOST = "127.0.0.1"
# Well under Timer B (64*T1 = 32 s with T1 0.5 s): a call that waited for Timer B fails.
SIPP_TIMEOUT = 10.0
Factory = Callable[..., ProxyProcess]


def _config(tmp_path: Path, proxy_port: int, trunk_port: int) -> dict[str, Any]:
    """base_config with the rules off, no trunk pings during the test and a short drain."""
    config = base_config(tmp_path, proxy_port=proxy_port, trunk_port=trunk_port, rules_off=True)
    config["trunks"][0]["options_interval"] = 3600
    config["routing"] = {"drain_seconds": 0.5}
    return config


def _finish(*peers: Sipp, proxy: ProxyProcess) -> None:
    """Wait for every SIPp (bounded) and assert each one passed its scenario."""
    with running(*peers):
        codes = [peer.wait(SIPP_TIMEOUT + 5) for peer in peers]
    for peer, code in zip(peers, codes, strict=True):
        assert code == 0, peer.report() + "\n--- proxy\n" + proxy.log_text()


def test_large_request_to_udp_only_listener_retried_over_udp(
    tmp_path: Path, proxy_factory: Factory
) -> None:
    """An INVITE of more than 1300 bytes (a long Subject) to a UDP trunk listening on UDP
    only: TCP is tried, refused, and the call completes over UDP (§18.1.1)."""
    proxy_port, trunk_port, uac_port = free_port(), free_port(), free_port()
    config = _config(tmp_path, proxy_port, trunk_port)
    subject = "sipguard large request " + "x" * 1400
    uac = scenario_variant(
        tmp_path, "uac_call.xml", {"Subject: sipguard test": f"Subject: {subject}"}
    )
    trunk = start_sipp(tmp_path, "uas_call.xml", local_port=trunk_port, timeout=SIPP_TIMEOUT)
    with running(trunk):
        proxy = proxy_factory(config)
        client = start_sipp(
            tmp_path, uac, local_port=uac_port, remote=(HOST, proxy_port), timeout=SIPP_TIMEOUT
        )
        _finish(client, trunk, proxy=proxy)
    (invite,) = received_messages(trunk.messages(), "INVITE ")
    assert len(invite.encode()) > 1300
    assert header_values(invite, "Subject") == [subject]
    top_via = header_values(invite, "Via")[0]
    assert top_via.startswith("SIP/2.0/UDP "), top_via
    failed = log_events(proxy, "stream.connect_failed")
    assert [e.get("transport") for e in failed] == ["tcp"], proxy.log_text()
    assert log_events(proxy, "transport.udp_retry"), proxy.log_text()


def test_tcp_trunk_refused_fails_over_to_udp_backup_at_once(
    tmp_path: Path, proxy_factory: Factory
) -> None:
    """The primary trunk is TCP and nothing listens there: the connection is refused and
    the call goes to the UDP backup within seconds, not after Timer B."""
    proxy_port, backup_port, uac_port = free_port(), free_port(), free_port()
    dead_port = free_port(socket.SOCK_STREAM)
    config = _config(tmp_path, proxy_port, dead_port)
    config["trunks"][0].update(transport="tcp", backup="backup")
    config["trunks"].append(
        {"name": "backup", "host": HOST, "port": backup_port, "options_interval": 3600}
    )
    backup = start_sipp(tmp_path, "uas_call.xml", local_port=backup_port, timeout=SIPP_TIMEOUT)
    with running(backup):
        proxy = proxy_factory(config)
        started = time.monotonic()
        client = start_sipp(
            tmp_path,
            "uac_call.xml",
            local_port=uac_port,
            remote=(HOST, proxy_port),
            timeout=SIPP_TIMEOUT,
        )
        _finish(client, backup, proxy=proxy)
        elapsed = time.monotonic() - started
    # Bounded by SIPP_TIMEOUT already; said explicitly against the 32 s of Timer B.
    assert elapsed < SIPP_TIMEOUT, elapsed
    assert len(received_messages(backup.messages(), "INVITE ")) == 1, backup.messages()
    failovers = log_events(proxy, "trunk.failover")
    assert [(e.get("trunk"), e.get("status")) for e in failovers] == [("backup", 503)], (
        proxy.log_text()
    )
