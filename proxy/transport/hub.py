"""Sockets: UDP endpoints and TCP/TLS connections, the only code in sipguard that does I/O on SIP.

The hub turns what arrives into calls on a `TransportEvents` sink (the runtime) and sends what
the core asks for. Stream connections are reused in both directions: a response goes back on
the connection its request came in on, and requests towards a trunk reuse an open connection
to that address before opening a new one (RFC 3261 §18.1.1, §18.2.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from dataclasses import dataclass, field
from typing import Protocol, cast

import structlog

from proxy.sip.errors import SipParseError
from proxy.sip.parser import StreamFramer
from proxy.transport.tls import peer_subject

Address = tuple[str, int]
log = structlog.get_logger("sipguard.transport")


class TransportEvents(Protocol):
    """What the hub reports to the runtime."""

    def datagram_received(self, data: bytes, remote: Address, local: Address) -> None:
        """A UDP datagram arrived."""

    def stream_message_received(
        self,
        data: bytes,
        connection_id: int,
        remote: Address,
        local: Address,
        transport: str,
        tls_subject: str | None,
    ) -> None:
        """One whole SIP message, framed by Content-Length, arrived on a connection."""

    def stream_error(self, error: SipParseError, connection_id: int) -> None:
        """A connection sent something that cannot be framed; the hub closes it."""

    def connection_closed(self, connection_id: int) -> None:
        """A connection went away."""

    def connection_failed(self, transport: str, remote: Address, error: str) -> None:
        """A connection the hub opened to send something could not be established: what
        was queued for it is lost (RFC 3261 §17.1.4: the transaction layer must hear of it)."""


class _UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, hub: TransportHub) -> None:
        self.hub = hub
        self.transport: asyncio.DatagramTransport | None = None
        self.local: Address = ("", 0)
        # Bound once: the per-datagram path is one call, not three attribute lookups.
        self._sink = hub.events.datagram_received

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not every loop's datagram transport subclasses asyncio.DatagramTransport (uvloop).
        self.transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.local = (sockname[0], sockname[1])
        self.hub._refresh_udp()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        # IPv4 peers arrive as (host, port) already; only IPv6's 4-tuple needs trimming.
        if len(addr) == 2:
            self._sink(data, addr, self.local)  # type: ignore[arg-type]
        else:
            self._sink(data, (str(addr[0]), int(addr[1])), self.local)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the transaction layer's timers cover the loss.
        log.debug("udp.error", error=str(exc))


@dataclass(eq=False)
class _Connection:
    connection_id: int
    transport: str
    remote: Address
    local: Address
    writer: _TransportWriter | None = None
    pending: list[bytes] = field(default_factory=list)
    tls_subject: str | None = None


class _StreamProtocol(asyncio.Protocol):
    """Frames one TCP/TLS connection by Content-Length and answers RFC 5626 CRLF pings."""

    def __init__(self, hub: TransportHub, transport_name: str) -> None:
        self.hub = hub
        self.transport_name = transport_name
        self.framer = StreamFramer(hub.max_message_size)
        self.connection: _Connection | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        sockname = transport.get_extra_info("sockname")
        subject = peer_subject(transport.get_extra_info("ssl_object"))
        self.connection = self.hub._register(
            self.transport_name, (peer[0], peer[1]), (sockname[0], sockname[1]), self, subject
        )

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        assert connection is not None and self.transport is not None
        pings_before = self.framer.keepalive_pings
        for item in self.framer.feed(data):
            if isinstance(item, SipParseError):
                self.hub.events.stream_error(item, connection.connection_id)
                # Framing is lost for good: there is no way to find the next message start.
                self.transport.close()
                return
            self.hub.events.stream_message_received(
                item,
                connection.connection_id,
                connection.remote,
                connection.local,
                connection.transport,
                connection.tls_subject,
            )
        for _ in range(self.framer.keepalive_pings - pings_before):
            self.transport.write(b"\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.connection is not None:
            self.hub._unregister(self.connection)


class TransportHub:
    """All listening sockets and open connections of one worker."""

    def __init__(
        self,
        events: TransportEvents,
        *,
        max_message_size: int = 65535,
        client_tls: ssl.SSLContext | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.events = events
        self.max_message_size = max_message_size
        self.client_tls = client_tls
        self.connect_timeout = connect_timeout
        self._udp: list[_UdpEndpoint] = []
        # Send paths resolved once per bound socket instead of a scan per datagram:
        # the transport bound to each local address, and the newest one per family.
        self._udp_by_local: dict[Address, asyncio.DatagramTransport] = {}
        self._udp_v4: asyncio.DatagramTransport | None = None
        self._udp_v6: asyncio.DatagramTransport | None = None
        self._servers: list[asyncio.Server] = []
        self._connections: dict[int, _Connection] = {}
        self._protocols: dict[int, _StreamProtocol] = {}
        self._by_remote: dict[tuple[str, Address], int] = {}
        self._next_id = 1
        self._tasks: set[asyncio.Task[None]] = set()
        self.send_failures = 0

    # -- listening ---------------------------------------------------------------------------

    async def listen_udp(self, host: str, port: int, *, reuse_port: bool = False) -> Address:
        """Bind a UDP endpoint; returns the bound address (port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        sock = _bound_socket(host, port, socket.SOCK_DGRAM, reuse_port)
        # Bursts of datagrams must not be dropped by a small kernel buffer while the loop works.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        local = sock.getsockname()
        _, protocol = await loop.create_datagram_endpoint(lambda: _UdpEndpoint(self), sock=sock)
        self._udp.append(protocol)
        self._refresh_udp()
        return (local[0], local[1])

    def _refresh_udp(self) -> None:
        """Recompute the UDP send table from the endpoints (bound or connected anew)."""
        by_local: dict[Address, asyncio.DatagramTransport] = {}
        v4: asyncio.DatagramTransport | None = None
        v6: asyncio.DatagramTransport | None = None
        for endpoint in self._udp:
            transport = endpoint.transport
            if transport is None:
                continue
            # The first endpoint bound to an address wins, as the scan did.
            by_local.setdefault(endpoint.local, transport)
            # The newest endpoint of each family is the default sender.
            if ":" in endpoint.local[0]:
                v6 = transport
            else:
                v4 = transport
        self._udp_by_local = by_local
        self._udp_v4 = v4
        self._udp_v6 = v6

    async def listen_stream(
        self,
        transport_name: str,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ) -> Address:
        """Listen for TCP (or TLS when `ssl_context` is given) connections."""
        loop = asyncio.get_running_loop()
        sock = _bound_socket(host, port, socket.SOCK_STREAM, reuse_port)
        sock.listen(1024)
        server = await loop.create_server(
            lambda: _StreamProtocol(self, transport_name), sock=sock, ssl=ssl_context
        )
        self._servers.append(server)
        name = sock.getsockname()
        return (name[0], name[1])

    # -- sending -----------------------------------------------------------------------------

    def send(
        self,
        transport_name: str,
        remote: Address,
        data: bytes,
        connection_id: int | None = None,
        *,
        local: Address | None = None,
    ) -> None:
        """Send `data`; on streams reuse `connection_id`, else any connection to `remote`.

        On UDP, `local` picks the socket to send from (a response leaves from where its
        request arrived, RFC 3581 §4); by default the worker's newest (private) socket.
        """
        if transport_name == "udp":
            self.send_udp(remote, data, local)
            return
        connection = None
        if connection_id is not None:
            connection = self._connections.get(connection_id)
        if connection is None:
            found = self._by_remote.get((transport_name, remote))
            connection = self._connections.get(found) if found is not None else None
        if connection is None:
            # RFC 3261 §18.2.2: when the connection a request came on is gone, a response goes
            # to the Via's sent-by, which the core passed as `remote`: open a new one there.
            connection = self._open(transport_name, remote)
        if connection.writer is None:
            connection.pending.append(data)
        else:
            connection.writer.write(data)

    def send_udp(self, remote: Address, data: bytes, local: Address | None = None) -> None:
        """Send one datagram from the socket bound to `local`, else from the newest socket
        of `remote`'s family (see `send`)."""
        if local is not None:
            transport = self._udp_by_local.get(local)
            if transport is not None:
                transport.sendto(data, remote)
                return
        transport = self._udp_v6 if ":" in remote[0] else self._udp_v4
        if transport is not None:
            transport.sendto(data, remote)
            return
        self.send_failures += 1
        log.warning("udp.no_endpoint", remote=f"{remote[0]}:{remote[1]}")

    def _open(self, transport_name: str, remote: Address) -> _Connection:
        connection = _Connection(self._allocate_id(), transport_name, remote, ("", 0))
        self._connections[connection.connection_id] = connection
        self._by_remote[(transport_name, remote)] = connection.connection_id
        task = asyncio.get_running_loop().create_task(self._connect(connection))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return connection

    async def _connect(self, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        protocol = _StreamProtocol(self, connection.transport)
        # The protocol must adopt the connection object the core already knows the id of.
        protocol.connection = connection
        ssl_context = self.client_tls if connection.transport == "tls" else None
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _AdoptingProtocol(protocol),
                    connection.remote[0],
                    connection.remote[1],
                    ssl=ssl_context,
                    server_hostname=connection.remote[0] if ssl_context else None,
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.send_failures += 1
            error = str(exc) or type(exc).__name__
            log.warning(
                "stream.connect_failed",
                transport=connection.transport,
                remote=f"{connection.remote[0]}:{connection.remote[1]}",
                error=error,
            )
            connection.pending.clear()
            # Forget the connection first: what the core sends in answer (a failover, a
            # retry over UDP) must not queue behind this dead one.
            self._unregister(connection)
            self.events.connection_failed(connection.transport, connection.remote, error)
            return
        writer_transport = transport
        connection.writer = _TransportWriter(writer_transport)
        for data in connection.pending:
            writer_transport.write(data)
        connection.pending.clear()

    # -- bookkeeping -------------------------------------------------------------------------

    def _allocate_id(self) -> int:
        connection_id = self._next_id
        self._next_id += 1
        return connection_id

    def _register(
        self,
        transport_name: str,
        remote: Address,
        local: Address,
        protocol: _StreamProtocol,
        subject: str | None,
    ) -> _Connection:
        assert protocol.transport is not None
        connection = _Connection(
            self._allocate_id(),
            transport_name,
            remote,
            local,
            _TransportWriter(protocol.transport),
            tls_subject=subject,
        )
        self._connections[connection.connection_id] = connection
        self._protocols[connection.connection_id] = protocol
        self._by_remote[(transport_name, remote)] = connection.connection_id
        return connection

    def _unregister(self, connection: _Connection) -> None:
        if self._connections.pop(connection.connection_id, None) is None:
            return
        self._protocols.pop(connection.connection_id, None)
        key = (connection.transport, connection.remote)
        if self._by_remote.get(key) == connection.connection_id:
            del self._by_remote[key]
        self.events.connection_closed(connection.connection_id)

    @property
    def connection_count(self) -> int:
        """Open stream connections (for metrics)."""
        return len(self._connections)

    async def close(self) -> None:
        """Stop listening and close every socket."""
        for server in self._servers:
            server.close()
        for endpoint in self._udp:
            if endpoint.transport is not None:
                endpoint.transport.close()
        for connection in list(self._connections.values()):
            if connection.writer is not None:
                connection.writer.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)


class _TransportWriter:
    """The two calls the hub needs from a stream transport."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._transport.close()


class _AdoptingProtocol(asyncio.Protocol):
    """Wraps an outgoing connection's protocol so it keeps the id allocated before connecting."""

    def __init__(self, inner: _StreamProtocol) -> None:
        self.inner = inner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.transport = cast(asyncio.Transport, transport)
        connection = self.inner.connection
        assert connection is not None
        sockname = transport.get_extra_info("sockname")
        connection.local = (sockname[0], sockname[1])
        connection.tls_subject = peer_subject(transport.get_extra_info("ssl_object"))
        self.inner.hub._protocols[connection.connection_id] = self.inner

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)


def _bound_socket(host: str, port: int, kind: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        # Several workers share the public ports; the kernel spreads packets by address.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock
