"""End-to-end calls through the running proxy with real SIPp peers (issue 2 §7)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import base_config
from tests.integration.harness import ProxyProcess, running, start_sipp

pytestmark = pytest.mark.sipp


def _call(
    tmp_path: Path,
    proxy_factory: Callable[..., ProxyProcess],
    ports: Callable[[], int],
    *,
    calls: int = 1,
    transport: str = "u1",
    uac_keys: dict[str, str] | None = None,
    uac_args: tuple[str, ...] = (),
    uas_args: tuple[str, ...] = (),
    config_edit: Callable[[dict[str, Any]], None] | None = None,
    timeout: float = 30.0,
) -> tuple[int, int, Any, Any, ProxyProcess]:
    proxy_port, trunk_port, uac_port = ports(), ports(), ports()
    config = base_config(tmp_path, proxy_port=proxy_port, trunk_port=trunk_port, rules_off=True)
    if transport == "t1":
        config["trunks"][0]["transport"] = "tcp"
    if config_edit is not None:
        config_edit(config)
    uas = start_sipp(tmp_path, "uas_call.xml", local_port=trunk_port, calls=calls,
                     transport=transport, extra_args=uas_args, timeout=timeout)
    proxy = proxy_factory(config)
    uac = start_sipp(tmp_path, "uac_call.xml", local_port=uac_port,
                     remote=("127.0.0.1", proxy_port), calls=calls, transport=transport,
                     keys=uac_keys, extra_args=uac_args, timeout=timeout)
    with running(uac, uas):
        uac_rc = uac.wait(timeout + 10)
        uas_rc = uas.wait(timeout + 10)
    return uac_rc, uas_rc, uac, uas, proxy


def test_basic_call_over_udp(tmp_path: Path, proxy_factory: Callable[..., ProxyProcess],
                             ports: Callable[[], int]) -> None:
    """INVITE/100/180/200/ACK/BYE/200 crosses the proxy source -> trunk over UDP."""
    uac_rc, uas_rc, uac, uas, proxy = _call(tmp_path, proxy_factory, ports, calls=3)
    assert uac_rc == 0, uac.report() + proxy.log_text()
    assert uas_rc == 0, uas.report() + proxy.log_text()
    received = uas.messages()
    assert "Record-Route:" in received
    assert received.count("Via: SIP/2.0/UDP") >= 2


def test_basic_call_over_tcp(tmp_path: Path, proxy_factory: Callable[..., ProxyProcess],
                             ports: Callable[[], int]) -> None:
    """The same call with SIPp and the trunk on TCP."""
    uac_rc, uas_rc, uac, uas, proxy = _call(tmp_path, proxy_factory, ports, transport="t1")
    assert uac_rc == 0, uac.report() + proxy.log_text()
    assert uas_rc == 0, uas.report() + proxy.log_text()
    assert "Via: SIP/2.0/TCP" in uas.messages()
