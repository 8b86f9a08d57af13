"""Helpers for the transaction tests: messages, a manager on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.sip.message import Request, Response, parse_message
from proxy.transaction import (
    Destination,
    TimerSettings,
    TransactionManager,
    TransactionOutput,
    Transmit,
)

UDP = Destination("udp", ("198.51.100.10", 5060))
TCP = Destination("tcp", ("198.51.100.10", 5060))
BRANCH = "z9hG4bKsgtest1"


def request_bytes(
    method: str = "INVITE",
    *,
    branch: str = BRANCH,
    sent_by: str = "192.0.2.1:5060",
    call_id: str = "tx-1@192.0.2.1",
    to_tag: str | None = None,
) -> bytes:
    """A request with one Via."""
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:bob@198.51.100.10 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def request(method: str = "INVITE", **kw: str) -> Request:
    """A parsed request."""
    message = parse_message(request_bytes(method, **kw))
    assert isinstance(message, Request)
    return message


def response(
    status: int, *, method: str = "INVITE", branch: str = BRANCH, to_tag: str = "b1"
) -> Response:
    """A response to the request above."""
    reason = {100: "Trying", 180: "Ringing", 200: "OK", 486: "Busy Here"}.get(status, "X")
    tag = f";tag={to_tag}" if status > 100 else ""
    data = (
        f"SIP/2.0 {status} {reason}\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        f"To: <sip:bob@example.com>{tag}\r\n"
        "Call-ID: tx-1@192.0.2.1\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, Response)
    return message


@dataclass
class Clock:
    """A manager and the fake time it is driven with."""

    manager: TransactionManager
    now: float = 100.0
    fired: list[tuple[float, TransactionOutput]] = field(default_factory=list)

    def run_until(self, end: float) -> list[TransactionOutput]:
        """Fire every deadline up to `end` (absolute), recording when each output came."""
        outputs: list[TransactionOutput] = []
        while True:
            deadline = self.manager.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = deadline
            for output in self.manager.handle_timers(deadline):
                outputs.append(output)
                self.fired.append((deadline, output))
        self.now = end
        return outputs

    def advance(self, seconds: float) -> list[TransactionOutput]:
        """Step the clock by `seconds`."""
        return self.run_until(self.now + seconds)


def make_clock(**settings: float) -> Clock:
    """A fresh manager (RFC defaults unless overridden) at fake time 100."""
    return Clock(TransactionManager(TimerSettings(**settings)))


def transmits(outputs: list[TransactionOutput]) -> list[bytes]:
    """The data of every Transmit output."""
    return [o.data for o in outputs if isinstance(o, Transmit)]
