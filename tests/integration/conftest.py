"""Fixtures that start real processes: the proxy (`sipguard run`) and SIPp peers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.policy.rules import RULES_BY_ID
from tests.integration.harness import ProxyProcess, free_port, start_proxy


def base_config(
    tmp_path: Path,
    *,
    proxy_port: int,
    trunk_port: int,
    pbx_port: int | None = None,
    source_policy: dict[str, Any] | None = None,
    rules_off: bool = False,
) -> dict[str, Any]:
    """A proxy on 127.0.0.1 with one source (127.0.0.1) and one trunk (127.0.0.1:trunk_port)."""
    policy: dict[str, Any] = {
        "customer": "acme-contact",
        "kind": "interpersonal",
        "principals": ["acme-energy"],
    }
    policy.update(source_policy or {})
    if rules_off:
        policy["rules"] = {rule_id: "off" for rule_id in RULES_BY_ID}
    source: dict[str, Any] = {
        "name": "pbx",
        "addresses": ["127.0.0.1/32"],
        "trunk": "operator",
        "policy": policy,
    }
    if pbx_port is not None:
        source["pbx"] = {"host": "127.0.0.1", "port": pbx_port}
    return {
        "listen": [
            {"transport": "udp", "host": "127.0.0.1", "port": proxy_port},
            {"transport": "tcp", "host": "127.0.0.1", "port": proxy_port},
        ],
        "timers": {"t1": 0.5, "t2": 4.0, "t4": 5.0, "timer_c": 180},
        "trunks": [
            {
                "name": "operator",
                "host": "127.0.0.1",
                "port": trunk_port,
                "options_interval": 2,
                "inbound": {"default_pbx": "pbx"} if pbx_port is not None else {},
            }
        ],
        "sources": [source],
        "policy": {
            "database": str(tmp_path / "sipguard.sqlite3"),
            "allocation_database": str(tmp_path / "allocation.sqlite3"),
            "principals": [{"name": "acme-energy"}],
            "audit": {"database": str(tmp_path / "audit.sqlite3")},
        },
        "logging": {"format": "json", "level": "info"},
        "admin": {"enabled": False},
    }


@pytest.fixture
def proxy_factory(tmp_path: Path) -> Iterator[Callable[..., ProxyProcess]]:
    """Start proxies on generated configs; all are stopped at teardown."""
    started: list[ProxyProcess] = []

    def factory(config: dict[str, Any], **kwargs: Any) -> ProxyProcess:
        proxy = start_proxy(tmp_path, config, **kwargs)
        started.append(proxy)
        return proxy

    yield factory
    for proxy in started:
        proxy.stop()


@pytest.fixture
def ports() -> Callable[[], int]:
    """A function returning a fresh free loopback port."""
    return free_port


def quick_config(tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    """`base_config` with a short drain, so SIGTERM ends the proxy cleanly (audit flushed)."""
    config = base_config(tmp_path, **kwargs)
    config["routing"] = {"drain_seconds": 0.5}
    return config
