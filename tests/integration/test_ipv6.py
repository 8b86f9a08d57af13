"""A call over IPv6 loopback: source, proxy and trunk all on [::1] (issue 2 §4)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import base_config
from tests.integration.harness import (
    ProxyProcess,
    header_values,
    received_messages,
    running,
    start_sipp,
)

pytestmark = pytest.mark.sipp


def _free_port_v6() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        probe.bind(("::1", 0))
        return int(probe.getsockname()[1])


def _ipv6_available() -> bool:
    try:
        _free_port_v6()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_available(), reason="this host has no IPv6 loopback (::1)")
def test_call_over_ipv6_loopback(tmp_path: Path, proxy_factory: Callable[..., ProxyProcess],
                                 ports: Callable[[], int]) -> None:
    """INVITE/200/ACK/BYE from [::1] through the proxy's [::1] listener to a [::1] trunk."""
    v6_port, trunk_port, uac_port = _free_port_v6(), _free_port_v6(), _free_port_v6()
    config = base_config(tmp_path, proxy_port=ports(), trunk_port=trunk_port, rules_off=True)
    config["listen"].append({"transport": "udp", "host": "::1", "port": v6_port})
    config["trunks"][0]["host"] = "::1"
    config["sources"][0]["addresses"] = ["127.0.0.1/32", "::1/128"]
    uas = start_sipp(tmp_path, "uas_call.xml", local_port=trunk_port, local_ip="::1")
    proxy = proxy_factory(config)
    uac = start_sipp(tmp_path, "uac_call.xml", local_port=uac_port, local_ip="::1",
                     remote=("[::1]", v6_port))
    with running(uac, uas):
        assert uac.wait(40) == 0, uac.report() + proxy.log_text()
        assert uas.wait(40) == 0, uas.report() + proxy.log_text()
    invite = received_messages(uas.messages(), "INVITE ")[0]
    # The proxy's own Via and Record-Route name its IPv6 listener, in brackets (RFC 3261 §25.1).
    assert header_values(invite, "Via")[0].startswith(f"SIP/2.0/UDP [::1]:{v6_port}"), invite
    assert f"[::1]:{v6_port}" in header_values(invite, "Record-Route")[0], invite
