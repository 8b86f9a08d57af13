"""What transactions hand back to their user (the proxy core): bytes to send and TU reports.

Transactions never do I/O; they return these values and the core turns them into actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.sip.message import Request, Response
    from proxy.transaction.client import ClientTransaction
    from proxy.transaction.server import ServerTransaction


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a transaction's messages go: transport ("udp"|"tcp"|"tls"), address, connection.

    `connection_id` names the stream a server transaction's request arrived on (responses go
    back on it, RFC 3261 §18.2.2); `local` is the socket address it arrived on, so UDP
    responses leave from the same address and port (RFC 3581 §4, symmetric NATs).
    """

    transport: str
    remote: tuple[str, int]
    connection_id: int | None = None
    local: tuple[str, int] | None = None

    @property
    def reliable(self) -> bool:
        """True for stream transports, which suppress retransmissions (RFC 3261 §17.1.1.2)."""
        return self.transport != "udp"


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send `data` to `destination` (a request, a retransmission, an ACK or a response)."""

    data: bytes
    destination: Destination


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A client transaction passes a response up to the TU (RFC 3261 §17.1.1.2, §17.1.2.2)."""

    transaction: ClientTransaction
    response: Response


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK matched an INVITE server transaction in the Accepted state (RFC 6026 §8.7):
    it belongs to the TU, which forwards it like any ACK for a 2xx."""

    transaction: ServerTransaction
    request: Request


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Timer B or F fired, or Timer C before any provisional: the TU acts as if it received a
    408 (RFC 3261 §16.7 step 1, §16.8)."""

    transaction: ClientTransaction


@dataclass(frozen=True, slots=True)
class TimerCFired:
    """Timer C fired after a provisional: the TU must CANCEL the branch (RFC 3261 §16.8)."""

    transaction: ClientTransaction


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport could not deliver the request: the TU acts as if it received a 503
    (RFC 3261 §16.9)."""

    transaction: ClientTransaction


@dataclass(frozen=True, slots=True)
class AckTimedOut:
    """Timer H fired: the ACK for our non-2xx final never came (RFC 3261 §17.2.1)."""

    transaction: ServerTransaction


TransactionOutput = (
    Transmit
    | ResponseReceived
    | AckReceived
    | TimedOut
    | TimerCFired
    | TransportFailed
    | AckTimedOut
)
