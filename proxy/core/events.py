"""Inputs to the proxy core: facts the shell observed, named in the past tense.

Each is a frozen slots dataclass, handed to `ProxyCore.handle(event, now)` together with the
current time; the core never reads a clock or a socket itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.config import Config

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class DatagramReceived:
    """A UDP datagram arrived from `remote` on the local socket `local`."""

    data: bytes
    remote: Address
    local: Address


@dataclass(frozen=True, slots=True)
class StreamMessageReceived:
    """One whole SIP message, framed by Content-Length, arrived on a TCP or TLS connection.

    `tls_subject` is the verified peer certificate's subject, when the shell has one.
    """

    data: bytes
    connection_id: int
    remote: Address
    local: Address
    transport: str
    tls_subject: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """A stream connection went away; later responses for it go to the Via address."""

    connection_id: int


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """The shell could not open a `transport` ("tcp"|"tls") connection to `remote` (refused,
    timed out, TLS handshake failed); `error` says why, for the log.

    Whatever the core sent there is lost: its client transactions towards that destination
    that have had no response yet see a transport error (RFC 3261 §17.1.4, §16.9: as a 503
    from that branch), or, when TCP was only chosen for the request's size, the request is
    sent again over UDP (RFC 3261 §18.1.1).
    """

    transport: str
    remote: Address
    error: str = ""


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The deadline returned by `next_deadline()` was reached."""


@dataclass(frozen=True, slots=True)
class CertificateFetched:
    """The certificate asked for with `FetchCertificate(url)` is in the shell's cache, or
    could not be fetched (`ok` False, `error` says why); parked requests are re-run."""

    url: str
    ok: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ConfigReloaded:
    """A new, validated configuration replaces the old one (trunk health is kept by name)."""

    config: Config


@dataclass(frozen=True, slots=True)
class DrainStarted:
    """Graceful shutdown began: new dialogs get 503 + Retry-After until the shell stops at
    `deadline`; in-dialog requests and transactions in flight carry on."""

    deadline: float


Event = (
    DatagramReceived
    | StreamMessageReceived
    | ConnectionClosed
    | ConnectionFailed
    | TimerFired
    | CertificateFetched
    | ConfigReloaded
    | DrainStarted
)
