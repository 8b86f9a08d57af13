"""Trunk monitoring with OPTIONS pings, and the failover choice it drives.

A trunk starts up. Each `options_interval` the core sends it an OPTIONS in a non-INVITE
client transaction; `options_failures` timeouts in a row mark it down, and any final
response marks it up again (the peer answered, whatever it thinks of OPTIONS).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from proxy.core.routing import VIA_TRANSPORT, Routes, bare_host, uri_host

if TYPE_CHECKING:
    from proxy.config import Trunk


class TrunkHealth:
    """The monitoring state of one trunk; it owns a "ping" timer in the core's heap."""

    __slots__ = ("armed", "failures", "name", "up")

    def __init__(self, name: str) -> None:
        """A trunk presumed up until its pings say otherwise."""
        self.name = name
        self.up = True
        self.failures = 0
        self.armed: dict[str, int] = {}

    def succeeded(self) -> bool:
        """A ping got a final response; True when this brings the trunk back up."""
        self.failures = 0
        if self.up:
            return False
        self.up = True
        return True

    def failed(self, threshold: int) -> bool:
        """A ping timed out; True when this takes the trunk down."""
        self.failures += 1
        if self.up and self.failures >= threshold:
            self.up = False
            return True
        return False


def select_trunk(routes: Routes, health: dict[str, TrunkHealth], name: str) -> Trunk | None:
    """The trunk to use for a source whose trunk is `name`: it if up, else the first trunk
    up along its chain of backups; None when none is up."""
    seen: set[str] = set()
    current: str | None = name
    while current is not None and current not in seen:
        seen.add(current)
        trunk = routes.trunks[current]
        state = health.get(current)
        if state is None or state.up:
            return trunk
        current = trunk.backup
    return None


def build_ping(routes: Routes, trunk: Trunk, seq: int) -> tuple[bytes, str]:
    """An OPTIONS for `trunk` and its branch (RFC 3261 §11.1 as a keepalive)."""
    transport = trunk.transport
    branch = f"z9hG4bKsgping{secrets.token_hex(6)}"
    host = uri_host(bare_host(trunk.host))
    local, port = routes.sent_by(transport, ":" in trunk.host)
    lines = [
        f"OPTIONS sip:{host}:{trunk.port};transport={transport} SIP/2.0",
        f"Via: SIP/2.0/{VIA_TRANSPORT[transport]} {local}:{port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:sipguard@{local}>;tag=sg{secrets.token_hex(4)}",
        f"To: <sip:{host}:{trunk.port}>",
        f"Call-ID: sgping-{secrets.token_hex(8)}@{local}",
        f"CSeq: {seq} OPTIONS",
        "User-Agent: sipguard",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), branch
