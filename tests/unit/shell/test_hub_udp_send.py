"""The hub's UDP send table picks the same socket the endpoint scan used to pick."""

from __future__ import annotations

from typing import Any, cast

from proxy.transport.hub import TransportEvents, TransportHub, _UdpEndpoint


class _Sink:
    def datagram_received(self, data: bytes, remote: Any, local: Any) -> None:
        self.last = (data, remote, local)


class _FakeTransport:
    def __init__(self, sockname: tuple[str, int]) -> None:
        self.sockname = sockname
        self.sent: list[tuple[bytes, Any]] = []

    def get_extra_info(self, name: str) -> Any:
        return self.sockname if name == "sockname" else None

    def sendto(self, data: bytes, remote: Any) -> None:
        self.sent.append((data, remote))


def _hub_with(*socknames: tuple[str, int]) -> tuple[TransportHub, list[_FakeTransport]]:
    hub = TransportHub(cast(TransportEvents, _Sink()))
    transports = []
    for sockname in socknames:
        endpoint = _UdpEndpoint(hub)
        transport = _FakeTransport(sockname)
        hub._udp.append(endpoint)
        endpoint.connection_made(transport)  # type: ignore[arg-type]
        transports.append(transport)
    return hub, transports


def test_send_from_the_socket_named_else_the_newest_of_the_family() -> None:
    hub, (public, private, v6) = _hub_with(
        ("127.0.0.1", 5060), ("127.0.0.1", 40000), ("::1", 5060)
    )
    hub.send_udp(("127.0.0.2", 5070), b"a", ("127.0.0.1", 5060))
    hub.send_udp(("127.0.0.2", 5070), b"b", None)
    hub.send_udp(("127.0.0.2", 5070), b"c", ("127.0.0.9", 1))
    hub.send_udp(("::2", 5070), b"d", None)
    assert public.sent == [(b"a", ("127.0.0.2", 5070))]
    assert private.sent == [(b"b", ("127.0.0.2", 5070)), (b"c", ("127.0.0.2", 5070))]
    assert v6.sent == [(b"d", ("::2", 5070))]


def test_no_socket_of_the_family_counts_a_failure() -> None:
    hub, _ = _hub_with(("127.0.0.1", 5060))
    hub.send_udp(("::2", 5070), b"x", None)
    assert hub.send_failures == 1


def test_datagram_remote_is_trimmed_to_host_and_port() -> None:
    sink = _Sink()
    hub = TransportHub(cast(TransportEvents, sink))
    endpoint = _UdpEndpoint(hub)
    endpoint.connection_made(_FakeTransport(("::1", 5060)))  # type: ignore[arg-type]
    endpoint.datagram_received(b"v6", ("::2", 5070, 0, 0))
    assert sink.last == (b"v6", ("::2", 5070), ("::1", 5060))
    endpoint.datagram_received(b"v4", ("127.0.0.2", 5070))
    assert sink.last == (b"v4", ("127.0.0.2", 5070), ("::1", 5060))
