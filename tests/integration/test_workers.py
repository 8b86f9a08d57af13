"""`sipguard run --workers 2`: both workers carry calls and answers find their worker (issue 2 §5).

The workers share the configured ports (SO_REUSEPORT, the kernel spreads packets by address
and port) and each puts a private port of its own in Via and Record-Route. The test sends
calls from several source addresses and ports and reads, at the trunk, the Via port of every
request: that port names the worker (from its `worker.started` log line). Which worker a
source lands on is the kernel's hash, so batches continue, up to a bound, until both workers
have carried calls; every call of every batch must succeed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import base_config
from tests.integration.harness import (
    ProxyProcess,
    Sipp,
    header_values,
    log_events,
    received_messages,
    running,
    start_sipp,
    wait_until,
)

pytestmark = pytest.mark.sipp

HOST = "127.0.0.1"
SIPP_TIMEOUT = 20.0
BATCH = 6  # concurrent callers per batch, each from its own address and port
MAX_BATCHES = 4  # 24 distinct sources: all on one worker has odds of 2**-23


def _worker_proxy(tmp_path: Path, proxy_factory: Callable[..., ProxyProcess],
                  proxy_port: int, trunk_port: int) -> tuple[ProxyProcess, dict[int, int]]:
    """A 2-worker proxy for sources 127.0.0.0/24; returns it and {private UDP port: worker}."""
    config: dict[str, Any] = base_config(tmp_path, proxy_port=proxy_port,
                                         trunk_port=trunk_port, rules_off=True)
    config["sources"][0]["addresses"] = ["127.0.0.0/24"]
    config["trunks"][0]["options_interval"] = 3600
    config["routing"] = {"drain_seconds": 0.5}
    proxy = proxy_factory(config, workers=2)
    assert wait_until(lambda: len(log_events(proxy, "worker.started")) == 2, 20), (
        proxy.log_text())
    workers: dict[int, int] = {}
    for event in log_events(proxy, "worker.started"):
        for entry in event["private"]:
            transport, _, port = entry.split(":")
            if transport == "udp":
                workers[int(port)] = int(event["worker"])
    assert sorted(workers.values()) == [0, 1] and proxy_port not in workers, proxy.log_text()
    return proxy, workers


def _via_port(request: str) -> int:
    match = re.search(r":(\d+);", header_values(request, "Via")[0])
    assert match is not None, request
    return int(match.group(1))


def _batches(tmp_path: Path, proxy: ProxyProcess, ports: Callable[[], int], proxy_port: int,
             trunk_port: int, uac: str, uas: str, check: Callable[[Sipp], set[int]]) -> set[int]:
    """Run batches of concurrent callers until both workers were seen; returns Via ports."""
    seen: set[int] = set()
    for batch in range(MAX_BATCHES):
        server = start_sipp(tmp_path, uas, local_port=trunk_port, calls=BATCH,
                            timeout=SIPP_TIMEOUT)
        with running(server):
            clients = [
                start_sipp(tmp_path, uac, local_port=ports(),
                           local_ip=f"127.0.0.{1 + (batch * BATCH + i) % 7}",
                           remote=(HOST, proxy_port), timeout=SIPP_TIMEOUT)
                for i in range(BATCH)
            ]
            with running(*clients):
                codes = [client.wait(SIPP_TIMEOUT + 10) for client in clients]
            server_code = server.wait(SIPP_TIMEOUT + 10)
        for client, code in zip(clients, codes, strict=True):
            assert code == 0, client.report() + "\n--- proxy\n" + proxy.log_text()
        assert server_code == 0, server.report() + "\n--- proxy\n" + proxy.log_text()
        seen |= check(server)
        if len(seen) >= 2:
            break
    return seen


def test_calls_from_many_sources_use_both_workers(
    tmp_path: Path, proxy_factory: Callable[..., ProxyProcess], ports: Callable[[], int]
) -> None:
    """Calls from several addresses/ports all complete, and both workers carried some."""
    proxy_port, trunk_port = ports(), ports()
    proxy, workers = _worker_proxy(tmp_path, proxy_factory, proxy_port, trunk_port)

    def check(server: Sipp) -> set[int]:
        trace = server.messages()
        invites = received_messages(trace, "INVITE ")
        byes = received_messages(trace, "BYE ")
        assert len(invites) == len(byes) == BATCH, trace
        via_ports = {_via_port(invite) for invite in invites}
        assert via_ports <= set(workers), (via_ports, workers)
        for invite in invites:
            # The Record-Route names the same worker's private port as the Via.
            assert f":{_via_port(invite)};" in header_values(invite, "Record-Route")[0], invite
        return via_ports

    seen = _batches(tmp_path, proxy, ports, proxy_port, trunk_port, "uac_call.xml",
                    "uas_call.xml", check)
    assert {workers[port] for port in seen} == {0, 1}, (seen, workers, proxy.log_text())


def test_cancel_reaches_the_worker_holding_the_invite(
    tmp_path: Path, proxy_factory: Callable[..., ProxyProcess], ports: Callable[[], int]
) -> None:
    """Each CANCEL is answered 200/487 by the worker that forwarded its INVITE, on both."""
    proxy_port, trunk_port = ports(), ports()
    proxy, workers = _worker_proxy(tmp_path, proxy_factory, proxy_port, trunk_port)

    def check(server: Sipp) -> set[int]:
        trace = server.messages()
        invites = received_messages(trace, "INVITE ")
        cancels = received_messages(trace, "CANCEL ")
        assert len(invites) == len(cancels) == BATCH, trace
        by_call = {header_values(i, "Call-ID")[0]: _via_port(i) for i in invites}
        for cancel in cancels:
            # The CANCEL went out of the worker whose private port the INVITE named.
            assert _via_port(cancel) == by_call[header_values(cancel, "Call-ID")[0]], cancel
        return set(by_call.values())

    seen = _batches(tmp_path, proxy, ports, proxy_port, trunk_port, "scn_uac_cancel.xml",
                    "scn_uas_cancel.xml", check)
    assert {workers[port] for port in seen} == {0, 1}, (seen, workers, proxy.log_text())
