"""Outputs of the proxy core: what the shell must do, named as imperatives."""

from __future__ import annotations

from dataclasses import dataclass

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Send:
    """Send `data` over `transport` ("udp"|"tcp"|"tls").

    Responses name the `connection_id` their request arrived on (RFC 3261 §18.2.2); if that
    connection is gone the shell opens one to `remote`. Requests to a peer have no
    connection id: the shell reuses a connection to `remote` or opens one. `local`, when
    set, is the socket the request arrived on, so a UDP response leaves from the address and
    port the peer sent to (RFC 3581 §4, symmetric NAT); None means the worker's own socket.
    """

    data: bytes
    transport: str
    remote: Address
    connection_id: int | None = None
    local: Address | None = None


@dataclass(frozen=True, slots=True)
class FetchCertificate:
    """Fetch the certificate at `url` into the cache, then report `CertificateFetched`."""

    url: str


@dataclass(frozen=True, slots=True)
class TransactionEnded:
    """One proxied (or locally answered) transaction got its final answer: the shell logs
    one line and counts it. `origin` is the source or trunk name ("unknown" otherwise),
    `trunk` the trunk involved, `duration` seconds from request to final response."""

    call_id: str
    method: str
    origin: str
    trunk: str | None
    status: int
    duration: float


@dataclass(frozen=True, slots=True)
class MessageDropped:
    """A message was dropped without an answer (unreadable, stray, ...): count it by
    `reason`, a short fixed label (e.g. "unparseable", "stray_response")."""

    reason: str
    remote: Address


@dataclass(frozen=True, slots=True)
class TrunkStateChanged:
    """A trunk went up or down according to its OPTIONS monitoring."""

    trunk: str
    up: bool


Action = Send | FetchCertificate | TransactionEnded | MessageDropped | TrunkStateChanged
