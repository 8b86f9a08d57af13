"""Helpers for the proxy core tests: a lab configuration, a message factory (h2's
FrameFactory style) and a harness that feeds bytes and a fake clock to a ProxyCore."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.config import Config, parse_config
from proxy.core.actions import Action, Send, TransactionEnded
from proxy.core.decision import RequestStep
from proxy.core.events import DatagramReceived, Event, StreamMessageReceived, TimerFired
from proxy.core.proxy import ProxyCore
from proxy.sip.message import Request, Response, parse_message

PROXY = ("192.0.2.1", 5060)
PBX1 = ("10.0.0.5", 5060)  # source "pbx1" (10.0.0.0/24), calls out through op1
PBX2 = ("10.0.1.5", 5060)  # source "pbx2" (10.0.1.0/24), gets inbound calls for +3399...
TRUNK1 = ("198.51.100.10", 5060)  # trunk "op1", backup "op2"
TRUNK2 = ("198.51.100.20", 5060)  # trunk "op2"
STRANGER = ("203.0.113.66", 5060)

BASE_CONFIG: dict[str, Any] = {
    "listen": [
        {"transport": "udp", "host": "192.0.2.1", "port": 5060},
        {"transport": "tcp", "host": "192.0.2.1", "port": 5060},
    ],
    "advertise": "192.0.2.1",
    "timers": {"t1": 0.5, "t2": 4.0, "t4": 5.0, "timer_c": 180.0},
    "trunks": [
        {
            "name": "op1",
            "host": "198.51.100.10",
            "port": 5060,
            "backup": "op2",
            "options_interval": 30,
            "options_failures": 2,
            "inbound": {
                "default_pbx": "pbx1",
                "routes": [{"prefix": "+3399", "pbx": "pbx2"}, {"prefix": "+339", "pbx": "pbx1"}],
            },
        },
        {
            "name": "op2",
            "host": "198.51.100.20",
            "port": 5060,
            "options_interval": 30,
            "options_failures": 2,
        },
    ],
    "sources": [
        {
            "name": "pbx1",
            "addresses": ["10.0.0.0/24"],
            "trunk": "op1",
            "pbx": {"host": "10.0.0.5", "port": 5060},
        },
        {
            "name": "pbx2",
            "addresses": ["10.0.1.0/24"],
            "trunk": "op1",
            "pbx": {"host": "10.0.1.5", "port": 5060},
        },
    ],
}


def make_config(**changes: Any) -> Config:
    """The lab configuration with top-level sections replaced by `changes`."""
    data = dict(BASE_CONFIG)
    data.update(changes)
    return parse_config(data)


class Messages:
    """Builds SIP messages as bytes, CRLF and all (h2's FrameFactory, for SIP)."""

    def request(
        self,
        method: str = "INVITE",
        *,
        uri: str = "sip:+33612345678@192.0.2.1",
        via: str = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-uac-1",
        call_id: str = "call-1@10.0.0.5",
        cseq: int = 1,
        from_tag: str = "uac1",
        to_tag: str | None = None,
        max_forwards: int | None = 70,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> bytes:
        """A request as a UAC (or upstream proxy) would send it."""
        to = "<sip:+33612345678@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
        lines = [f"{method} {uri} SIP/2.0", f"Via: {via}"]
        if max_forwards is not None:
            lines.append(f"Max-Forwards: {max_forwards}")
        lines += [
            f"From: <sip:+33100000001@10.0.0.5>;tag={from_tag}",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            "Contact: <sip:pbx@10.0.0.5:5060>",
        ]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def response(
        self,
        request: bytes | Request,
        status: int,
        reason: str = "OK",
        *,
        to_tag: str | None = "uas1",
        contact: str | None = "<sip:uas@198.51.100.10:5060>",
        headers: Sequence[tuple[str, str]] = (),
    ) -> bytes:
        """The response a downstream UAS sends to `request` (Via/From/To/Call-ID/CSeq and
        Record-Route copied, §8.2.6.2, §12.1.1)."""
        parsed = request if isinstance(request, Request) else parse(request)
        assert isinstance(parsed, Request)
        lines = [f"SIP/2.0 {status} {reason}"]
        for name in ("Via", "Record-Route"):
            lines += [f"{name}: {value}" for value in parsed.get_all(name)]
        to = parsed.get("To") or ""
        if to_tag and status > 100 and ";tag=" not in to:
            to += f";tag={to_tag}"
        lines += [
            f"From: {parsed.get('From')}",
            f"To: {to}",
            f"Call-ID: {parsed.call_id}",
            f"CSeq: {parsed.cseq.seq} {parsed.cseq.method}",
        ]
        if contact and status < 300 and status > 100:
            lines.append(f"Contact: {contact}")
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse(data: bytes) -> Request | Response:
    """Parse bytes the core produced."""
    return parse_message(data)


@dataclass
class Harness:
    """A ProxyCore, a fake clock and what it returned last."""

    core: ProxyCore
    now: float = 1_000_000.0
    log: list[Action] = field(default_factory=list)

    def feed(
        self, data: bytes, remote: tuple[str, int], local: tuple[str, int] = PROXY
    ) -> list[Action]:
        """Deliver a UDP datagram from `remote`."""
        return self.event(DatagramReceived(data, remote, local))

    def feed_stream(
        self,
        data: bytes,
        remote: tuple[str, int],
        *,
        connection_id: int = 7,
        transport: str = "tcp",
        tls_subject: str | None = None,
    ) -> list[Action]:
        """Deliver a message framed on a TCP/TLS connection."""
        return self.event(
            StreamMessageReceived(data, connection_id, remote, PROXY, transport, tls_subject)
        )

    def event(self, event: Event) -> list[Action]:
        """Deliver any event at the current fake time."""
        actions = self.core.handle(event, self.now)
        self.log.extend(actions)
        return actions

    def advance(self, seconds: float) -> list[Action]:
        """Step the clock, firing every deadline on the way, in order."""
        end = self.now + seconds
        actions: list[Action] = []
        while True:
            deadline = self.core.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            actions += self.event(TimerFired())
        self.now = end
        return actions


def is_ping(send: Send) -> bool:
    """True for the core's own trunk OPTIONS pings (and nothing a test sends)."""
    return send.data.startswith(b"OPTIONS ") and b"Call-ID: sgping-" in send.data


def sends(
    actions: Iterable[Action], to: tuple[str, int] | None = None, *, pings: bool = False
) -> list[Send]:
    """The Send actions, optionally only those to `to`; trunk pings left out unless asked."""
    return [
        a
        for a in actions
        if isinstance(a, Send) and (to is None or a.remote == to) and (pings or not is_ping(a))
    ]


def parsed(
    actions: Iterable[Action], to: tuple[str, int] | None = None
) -> list[Request | Response]:
    """The messages sent, parsed."""
    return [parse(s.data) for s in sends(actions, to)]


def statuses(actions: Iterable[Action], to: tuple[str, int] | None = None) -> list[int]:
    """Status codes of the responses sent."""
    return [m.status for m in parsed(actions, to) if isinstance(m, Response)]


def ended(actions: Iterable[Action]) -> list[TransactionEnded]:
    """The TransactionEnded actions."""
    return [a for a in actions if isinstance(a, TransactionEnded)]


def only_request(actions: Iterable[Action], to: tuple[str, int]) -> Request:
    """The single request sent to `to`."""
    requests = [m for m in parsed(actions, to) if isinstance(m, Request)]
    assert len(requests) == 1, requests
    return requests[0]


def make_harness(
    config: Config | None = None,
    *,
    source_steps: Sequence[RequestStep] = (),
    trunk_steps: Sequence[RequestStep] = (),
    advertised: dict[str, tuple[str, int]] | None = None,
) -> Harness:
    """A harness around a fresh core, started at the fake time."""
    core = ProxyCore(
        config or make_config(),
        source_steps=source_steps,
        trunk_steps=trunk_steps,
        advertised=advertised,
    )
    harness = Harness(core)
    harness.event(TimerFired())
    return harness
