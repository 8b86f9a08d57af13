"""Operations with `--workers 2` (issue 5 §1, §3, §4): one /metrics sums both workers, SIGHUP
reloads every worker, SIGTERM drains and stops every worker with exit code 0."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import ProxyProcess, Sipp, log_events, received_messages, wait_until
from tests.integration.test_operations import TOKEN, _metric
from tests.integration.test_workers import BATCH, _batches, _via_port, _worker_proxy

pytestmark = pytest.mark.sipp


def _two_workers_with_admin(
    tmp_path: Path, proxy_factory: Callable[..., ProxyProcess], ports: Callable[[], int]
) -> tuple[ProxyProcess, dict[int, int], int, int]:
    proxy_port, trunk_port, admin_port = ports(), ports(), ports()

    def with_admin(config: dict[str, Any], **kwargs: Any) -> ProxyProcess:
        config["admin"] = {"enabled": True, "host": "127.0.0.1", "port": admin_port,
                           "token": TOKEN}
        return proxy_factory(config, **kwargs)

    proxy, workers = _worker_proxy(tmp_path, with_admin, proxy_port, trunk_port)
    return proxy, workers, proxy_port, trunk_port


def test_metrics_sum_reload_and_stop_across_two_workers(
    tmp_path: Path, proxy_factory: Callable[..., ProxyProcess], ports: Callable[[], int]
) -> None:
    """Both workers carry calls, /metrics counts all, SIGHUP reloads both, SIGTERM exits 0."""
    proxy, workers, proxy_port, trunk_port = _two_workers_with_admin(
        tmp_path, proxy_factory, ports)
    answered: list[int] = []

    def check(server: Sipp) -> set[int]:
        invites = received_messages(server.messages(), "INVITE ")
        answered.append(len(invites))
        return {_via_port(invite) for invite in invites}

    seen = _batches(tmp_path, proxy, ports, proxy_port, trunk_port, "uac_call.xml",
                    "uas_call.xml", check)
    assert {workers[port] for port in seen} == {0, 1}, (seen, workers)
    calls = sum(answered)
    assert calls >= BATCH

    # One endpoint, served by worker 0, shows the calls of both workers (multiprocess mode).
    assert wait_until(
        lambda: _metric(proxy, "sipguard_transactions_total", method="INVITE",
                        status="200") == calls, 10), proxy.log_text()

    proxy.signal(signal.SIGHUP)
    assert wait_until(
        lambda: {e["worker"] for e in log_events(proxy, "reload.done")} == {0, 1}, 15
    ), proxy.log_text()

    assert proxy.stop() == 0, proxy.log_text()
    assert {e["worker"] for e in log_events(proxy, "worker.stopped")} == {0, 1}
